//! The candidate key/value representations and keyspace designs.
#![allow(unused_imports)]

use super::*;

// ---------------------------------------------------------------------------------------------
// Key and value representations
// ---------------------------------------------------------------------------------------------

/// Bytes inline up to 22, else one shared heap allocation. 24 bytes.
#[derive(Clone)]
pub(crate) enum IStr {
    Inline(u8, [u8; 22]),
    Heap(Arc<[u8]>),
}
impl IStr {
    pub(crate) fn new(b: &[u8]) -> Self {
        if b.len() <= 22 {
            let mut a = [0u8; 22];
            a[..b.len()].copy_from_slice(b);
            IStr::Inline(b.len() as u8, a)
        } else {
            IStr::Heap(Arc::from(b))
        }
    }
    pub(crate) fn bytes(&self) -> &[u8] {
        match self {
            IStr::Inline(n, a) => &a[..*n as usize],
            IStr::Heap(h) => h,
        }
    }
}
impl Borrow<[u8]> for IStr {
    fn borrow(&self) -> &[u8] {
        self.bytes()
    }
}
impl Hash for IStr {
    fn hash<H: Hasher>(&self, h: &mut H) {
        self.bytes().hash(h)
    }
}
impl PartialEq for IStr {
    fn eq(&self, o: &Self) -> bool {
        self.bytes() == o.bytes()
    }
}
impl Eq for IStr {}
impl PartialOrd for IStr {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for IStr {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        self.bytes().cmp(o.bytes())
    }
}

pub(crate) trait KeyRep: Clone + Hash + Eq + Borrow<[u8]> + Send + Sync + 'static {
    fn make(b: &[u8]) -> Self;
}
impl KeyRep for Vec<u8> {
    fn make(b: &[u8]) -> Self {
        b.to_vec()
    }
}
impl KeyRep for Box<[u8]> {
    fn make(b: &[u8]) -> Self {
        b.into()
    }
}
impl KeyRep for IStr {
    fn make(b: &[u8]) -> Self {
        IStr::new(b)
    }
}

/// Compact value: short strings inline, else one `Arc<[u8]>`; small hashes as one packed
/// listpack-like buffer (`[flen][field][vlen][value]...`). Copying a `Val` copies a handle.
#[derive(Clone)]
pub(crate) enum Val {
    Str(IStr),
    SmallHash(Arc<[u8]>),
}

pub(crate) fn pack_fields(f: &[(Vec<u8>, Vec<u8>)], out: &mut Vec<u8>) {
    for (k, v) in f {
        out.push(k.len() as u8);
        out.extend_from_slice(k);
        out.push(v.len() as u8);
        out.extend_from_slice(v);
    }
}

pub(crate) trait ValRep: Clone + Send + Sync + 'static {
    fn make(o: &Obj) -> Self;
    fn visit(&self, f: &mut dyn FnMut(&[u8]));
}
impl ValRep for Val {
    fn make(o: &Obj) -> Self {
        match o {
            Obj::Str(b) => Val::Str(IStr::new(b)),
            Obj::Hash(fs) => {
                let mut v = Vec::with_capacity(fs.iter().map(|(a, b)| a.len() + b.len() + 2).sum());
                pack_fields(fs, &mut v);
                Val::SmallHash(Arc::from(v))
            }
        }
    }
    fn visit(&self, f: &mut dyn FnMut(&[u8])) {
        match self {
            Val::Str(s) => f(s.bytes()),
            Val::SmallHash(b) => f(b),
        }
    }
}
/// The decoder's data model as is.
impl ValRep for Value {
    fn make(o: &Obj) -> Self {
        match o {
            Obj::Str(b) => Value::String(b.to_vec()),
            Obj::Hash(fs) => Value::Hash(
                fs.iter()
                    .map(|(k, v)| HashField {
                        field: k.clone(),
                        value: v.clone(),
                        expire_ms: None,
                    })
                    .collect(),
            ),
        }
    }
    fn visit(&self, f: &mut dyn FnMut(&[u8])) {
        match self {
            Value::String(s) => f(s),
            Value::Hash(fs) => {
                for h in fs {
                    f(&h.field);
                    f(&h.value);
                }
            }
            _ => {}
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Keyspace designs
// ---------------------------------------------------------------------------------------------

pub(crate) trait Keyspace: Sized + Send + 'static {
    type Snap: Send + 'static;
    fn set(&mut self, k: &[u8], o: &Obj);
    /// Taken on the apply thread: this is the pause.
    fn snapshot(&mut self) -> Self::Snap;
    /// Run on the writer thread; returns the number of entries visited.
    fn walk(s: &Self::Snap, f: &mut dyn FnMut(&[u8])) -> u64;
}

// --- 2. sharded copy-on-write ---------------------------------------------------------------

pub(crate) struct Cow<K, V> {
    shards: Vec<Arc<hashbrown::HashMap<K, V, S>>>,
    mask: usize,
}
pub(crate) fn shard_of(k: &[u8], mask: usize) -> usize {
    // Bits 40.. of the hash: disjoint from the in-table bits (low bits and the top 7).
    (hash_bytes(k) >> 40) as usize & mask
}
impl<K: KeyRep, V: ValRep> Cow<K, V> {
    pub(crate) fn new(shards: usize) -> Self {
        Cow {
            shards: (0..shards)
                .map(|_| Arc::new(hashbrown::HashMap::with_hasher(hasher())))
                .collect(),
            mask: shards - 1,
        }
    }
}
impl<K: KeyRep, V: ValRep> Keyspace for Cow<K, V> {
    type Snap = Vec<Arc<hashbrown::HashMap<K, V, S>>>;
    fn set(&mut self, k: &[u8], o: &Obj) {
        let i = shard_of(k, self.mask);
        // First write to a shard the snapshot shares copies that shard (handles, not data,
        // unless V itself deep-copies).
        Arc::make_mut(&mut self.shards[i]).insert(K::make(k), V::make(o));
    }
    fn snapshot(&mut self) -> Self::Snap {
        self.shards.clone()
    }
    fn walk(s: &Self::Snap, f: &mut dyn FnMut(&[u8])) -> u64 {
        let mut n = 0;
        for sh in s {
            for (k, v) in sh.iter() {
                f(k.borrow());
                v.visit(f);
                n += 1;
            }
        }
        n
    }
}

// --- 2b. sharded copy-on-write, one allocation per key (key + type + value packed) -----------

#[derive(Clone)]
pub(crate) struct PackedShard(hashbrown::HashTable<Arc<[u8]>>);
pub(crate) fn packed_key(e: &[u8]) -> &[u8] {
    &e[1..1 + e[0] as usize]
}
pub(crate) struct Packed {
    shards: Vec<Arc<PackedShard>>,
    mask: usize,
}
impl Packed {
    pub(crate) fn new(shards: usize) -> Self {
        Packed {
            shards: (0..shards)
                .map(|_| Arc::new(PackedShard(hashbrown::HashTable::new())))
                .collect(),
            mask: shards - 1,
        }
    }
}
impl Keyspace for Packed {
    type Snap = Vec<Arc<PackedShard>>;
    fn set(&mut self, k: &[u8], o: &Obj) {
        let mut e = Vec::with_capacity(2 + k.len() + 128);
        e.push(k.len() as u8);
        e.extend_from_slice(k);
        match o {
            Obj::Str(b) => {
                e.push(0);
                e.extend_from_slice(b);
            }
            Obj::Hash(fs) => {
                e.push(4);
                pack_fields(fs, &mut e);
            }
        }
        let e: Arc<[u8]> = Arc::from(e);
        let h = hash_bytes(k);
        let i = (h >> 40) as usize & self.mask;
        let t = &mut Arc::make_mut(&mut self.shards[i]).0;
        match t.entry(h, |x| packed_key(x) == k, |x| hash_bytes(packed_key(x))) {
            hashbrown::hash_table::Entry::Occupied(mut o) => *o.get_mut() = e,
            hashbrown::hash_table::Entry::Vacant(v) => {
                v.insert(e);
            }
        }
    }
    fn snapshot(&mut self) -> Self::Snap {
        self.shards.clone()
    }
    fn walk(s: &Self::Snap, f: &mut dyn FnMut(&[u8])) -> u64 {
        let mut n = 0;
        for sh in s {
            for e in sh.0.iter() {
                let kl = e[0] as usize;
                f(&e[1..1 + kl]);
                f(&e[2 + kl..]);
                n += 1;
            }
        }
        n
    }
}

// --- 1. persistent HAMT / 3b. persistent B-tree ---------------------------------------------

pub(crate) struct Hamt(pub(crate) imbl::GenericHashMap<IStr, Val, S, imbl::shared_ptr::ArcK>);
impl Keyspace for Hamt {
    type Snap = imbl::GenericHashMap<IStr, Val, S, imbl::shared_ptr::ArcK>;
    fn set(&mut self, k: &[u8], o: &Obj) {
        self.0.insert(IStr::new(k), Val::make(o));
    }
    fn snapshot(&mut self) -> Self::Snap {
        self.0.clone()
    }
    fn walk(s: &Self::Snap, f: &mut dyn FnMut(&[u8])) -> u64 {
        let mut n = 0;
        for (k, v) in s.iter() {
            f(k.bytes());
            v.visit(f);
            n += 1;
        }
        n
    }
}

pub(crate) struct BTree(pub(crate) imbl::OrdMap<IStr, Val>);
impl Keyspace for BTree {
    type Snap = imbl::OrdMap<IStr, Val>;
    fn set(&mut self, k: &[u8], o: &Obj) {
        self.0.insert(IStr::new(k), Val::make(o));
    }
    fn snapshot(&mut self) -> Self::Snap {
        self.0.clone()
    }
    fn walk(s: &Self::Snap, f: &mut dyn FnMut(&[u8])) -> u64 {
        let mut n = 0;
        for (k, v) in s.iter() {
            f(k.bytes());
            v.visit(f);
            n += 1;
        }
        n
    }
}

// --- 3. iterate-and-record (per-shard copy-before-write against a snapshot epoch) -----------

pub(crate) struct RShard<K, V> {
    map: hashbrown::HashMap<K, V, S>,
    /// Epoch of the last snapshot whose walker has passed this shard.
    seen: u64,
    /// For the running snapshot, keys changed before the walker got here: the old value, or
    /// `None` when the key did not exist at the snapshot.
    rec: hashbrown::HashMap<K, Option<V>, S>,
    /// The snapshot `rec` belongs to: records of an abandoned snapshot are stale.
    rec_epoch: u64,
}
pub(crate) struct Record<K, V> {
    shards: Arc<Vec<Mutex<RShard<K, V>>>>,
    mask: usize,
    epoch: u64,
    active: u64,
}
impl<K: KeyRep, V: ValRep> Record<K, V> {
    pub(crate) fn new(shards: usize) -> Self {
        Record {
            shards: Arc::new(
                (0..shards)
                    .map(|_| {
                        Mutex::new(RShard {
                            map: hashbrown::HashMap::with_hasher(hasher()),
                            seen: 0,
                            rec: hashbrown::HashMap::with_hasher(hasher()),
                            rec_epoch: 0,
                        })
                    })
                    .collect(),
            ),
            mask: shards - 1,
            epoch: 0,
            active: 0,
        }
    }
}
pub(crate) struct RSnap<K, V> {
    shards: Arc<Vec<Mutex<RShard<K, V>>>>,
    epoch: u64,
}
impl<K: KeyRep, V: ValRep> Keyspace for Record<K, V> {
    type Snap = RSnap<K, V>;
    fn set(&mut self, k: &[u8], o: &Obj) {
        let i = shard_of(k, self.mask);
        let mut g = self.shards[i].lock().unwrap();
        let sh = &mut *g;
        if self.active != 0 && sh.seen < self.active && sh.rec_epoch != self.active {
            sh.rec.clear(); // left by an abandoned snapshot
            sh.rec_epoch = self.active;
        }
        if self.active != 0 && sh.seen < self.active && !sh.rec.contains_key(k) {
            let old = sh.map.get(k).cloned();
            sh.rec.insert(K::make(k), old);
        }
        sh.map.insert(K::make(k), V::make(o));
    }
    fn snapshot(&mut self) -> Self::Snap {
        self.epoch += 1;
        self.active = self.epoch;
        RSnap {
            shards: self.shards.clone(),
            epoch: self.epoch,
        }
    }
    fn walk(s: &Self::Snap, f: &mut dyn FnMut(&[u8])) -> u64 {
        let mut n = 0;
        let mut items: Vec<(K, V)> = Vec::new();
        for m in s.shards.iter() {
            {
                let mut g = m.lock().unwrap();
                let sh = &mut *g;
                if sh.seen >= s.epoch {
                    continue; // (a newer snapshot superseded this one)
                }
                if sh.rec_epoch != s.epoch {
                    sh.rec.clear();
                }
                // Under the lock only handles are cloned; the values are visited after.
                for (k, v) in sh.map.iter() {
                    match sh.rec.get(k.borrow()) {
                        Some(Some(old)) => items.push((k.clone(), old.clone())),
                        Some(None) => {} // created after the snapshot
                        None => items.push((k.clone(), v.clone())),
                    }
                }
                for (k, old) in sh.rec.iter() {
                    if let Some(old) = old {
                        if !sh.map.contains_key(k.borrow()) {
                            items.push((k.clone(), old.clone())); // deleted after the snapshot
                        }
                    }
                }
                sh.seen = s.epoch;
                sh.rec = hashbrown::HashMap::with_hasher(hasher());
            }
            for (k, v) in items.drain(..) {
                f(k.borrow());
                v.visit(f);
                n += 1;
            }
        }
        n
    }
}
