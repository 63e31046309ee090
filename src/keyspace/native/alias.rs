//! Copy-on-write nodes whose copy shares the items: the first write to a node a snapshot
//! still holds copies the node's slots, not the items they point to.
//!
//! Owns item ownership between a node and its copies. Big sets, hashes and sorted sets
//! hold their items (members, hash records, (score, member) pairs) in nodes of ~1–2 k
//! slots behind `Arc`s. Before this, the first write to a node a snapshot held copied the
//! node *and every item in it*, so under writes spread over a big value nearly all of it
//! was copied while the snapshot was written. Now an [`Node::make_mut`] of a shared node
//! makes a node of bit copies of the same items ([`Raw`]): the new (live) node owns them,
//! the old one (the snapshot's) only reads them. An item the live side lets go of while an
//! older node may still read it goes to that node's grave and is freed when the node is,
//! never before; a node dropped while an older one is alive hands its items over the same
//! way. Items are immutable once made, so a shared item never changes under a reader.
//!
//! The rule this relies on: at most one handle per chain of copies ever changes it (the
//! live value); every other handle is a snapshot's, read and dropped. A value that two keys
//! hold (COPY) is deep-copied ([`Node::deep_clone`]), never shared.
//!
//! A leaf: it knows nothing of keys or snapshots. It must never drop an item that an older
//! node may still read, and never drop one twice; an error here leaks (items are never
//! dropped implicitly), it does not free.

use std::mem::ManuallyDrop;
use std::ops::Deref;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};

/// One item in a node's slots. Cloning copies the bits (the copy points at the same heap
/// memory) and nothing is ever dropped implicitly: the node drops an item explicitly, once,
/// where it knows no other node can read it.
#[repr(transparent)]
pub struct Raw<T>(ManuallyDrop<T>);

impl<T> Raw<T> {
    pub fn new(t: T) -> Raw<T> {
        Raw(ManuallyDrop::new(t))
    }

    /// The item itself, to drop or keep.
    ///
    /// # Safety
    /// No other bit copy of this item may ever be read or turned into `T` again.
    unsafe fn into_inner(self) -> T {
        ManuallyDrop::into_inner(self.0)
    }
}

impl<T> Clone for Raw<T> {
    fn clone(&self) -> Raw<T> {
        // SAFETY: a bit copy of a live value; `Raw` never drops it, so the copy is only
        // ever read, and `into_inner` (unsafe, node-private) decides who drops it.
        Raw(unsafe { std::ptr::read(&self.0) })
    }
}

impl<T> Deref for Raw<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

/// What a node holds: a container of [`Raw`] items.
pub trait Body: Default {
    type Item;
    /// A container of bit copies of every item (a clone of the slots).
    fn alias(&self) -> Self;
    /// Take every item out, leaving the container empty.
    fn drain_into(&mut self, out: &mut Vec<Raw<Self::Item>>);
}

/// A copy-on-write node. See the module doc for who owns its items.
pub struct Node<C: Body> {
    body: C,
    /// False once the items belong to a copy made by [`Node::make_mut`].
    owns: AtomicBool,
    /// Older nodes of the same chain that may still read some of our items, newest first.
    kin: Vec<Weak<Node<C>>>,
    /// Items newer nodes let go of while we may still read them.
    grave: Mutex<Vec<Raw<C::Item>>>,
}

impl<C: Body> Node<C> {
    pub fn new(body: C) -> Node<C> {
        Node {
            body,
            owns: AtomicBool::new(true),
            kin: Vec::new(),
            grave: Mutex::new(Vec::new()),
        }
    }

    pub fn body(&self) -> &C {
        &self.body
    }

    pub fn body_mut(&mut self) -> &mut C {
        &mut self.body
    }

    /// The node behind `this` for a change: when another handle (a snapshot's) shares it,
    /// `this` first gets a node of its own holding the same items (copied slots only).
    pub fn make_mut(this: &mut Arc<Node<C>>) -> &mut Node<C> {
        if Arc::get_mut(this).is_none() {
            let old = &**this;
            let mut kin = Vec::with_capacity(old.kin.len() + 1);
            kin.push(Arc::downgrade(this));
            kin.extend(old.kin.iter().filter(|w| w.strong_count() > 0).cloned());
            let copy = Node {
                body: old.body.alias(),
                owns: AtomicBool::new(true),
                kin,
                grave: Mutex::new(Vec::new()),
            };
            old.owns.store(false, Ordering::Release);
            *this = Arc::new(copy);
        }
        Arc::get_mut(this).expect("a node of our own")
    }

    /// A new node for items moved out of this one (a split): older nodes may read them too.
    pub fn sibling(&self, body: C) -> Node<C> {
        Node {
            body,
            owns: AtomicBool::new(true),
            kin: self
                .kin
                .iter()
                .filter(|w| w.strong_count() > 0)
                .cloned()
                .collect(),
            grave: Mutex::new(Vec::new()),
        }
    }

    /// The newest older node still alive, forgetting the dead ones on the way.
    fn first_alive(kin: &[Weak<Node<C>>]) -> Option<Arc<Node<C>>> {
        kin.iter().find_map(Weak::upgrade)
    }

    /// Let go of an item taken out of this node: dropped now, or kept until every older
    /// node that may read it is gone.
    pub fn evict(&mut self, item: Raw<C::Item>) {
        if !self.kin.is_empty() {
            if let Some(a) = Self::first_alive(&self.kin) {
                a.grave.lock().unwrap_or_else(|p| p.into_inner()).push(item);
                return;
            }
            self.kin.clear();
        }
        // SAFETY: no older node is alive, and the item was taken out of our own slots.
        drop(unsafe { item.into_inner() });
    }

    /// A node of fresh copies of every item, sharing nothing (a value two keys hold).
    pub fn deep_clone(&self, copy: impl Fn(&C) -> C) -> Node<C> {
        Node::new(copy(&self.body))
    }
}

impl<C: Body> Drop for Node<C> {
    fn drop(&mut self) {
        let mut items = std::mem::take(self.grave.get_mut().unwrap_or_else(|p| p.into_inner()));
        if *self.owns.get_mut() {
            self.body.drain_into(&mut items);
        }
        // Otherwise the slots' items belong to a newer node: the slots go, the items stay.
        if items.is_empty() {
            return;
        }
        if let Some(a) = Self::first_alive(&self.kin) {
            a.grave
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .append(&mut items);
            return;
        }
        for i in items {
            // SAFETY: ours (owned slots or grave) and no older node is alive to read it.
            drop(unsafe { i.into_inner() });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    /// Counts live instances per test; a double drop or a read after free shows as a wrong
    /// count or a wrong value (and under Miri as UB).
    struct Tracked(Box<u64>, &'static AtomicUsize);
    impl Tracked {
        fn new(v: u64, live: &'static AtomicUsize) -> Tracked {
            live.fetch_add(1, Ordering::SeqCst);
            Tracked(Box::new(v), live)
        }
    }
    impl Tracked {
        fn clone_ref(r: &Raw<Tracked>) -> &Tracked {
            r
        }
    }
    impl Drop for Tracked {
        fn drop(&mut self) {
            self.1.fetch_sub(1, Ordering::SeqCst);
        }
    }

    #[derive(Default)]
    struct V(Vec<Raw<Tracked>>);
    impl Body for V {
        type Item = Tracked;
        fn alias(&self) -> V {
            V(self.0.clone())
        }
        fn drain_into(&mut self, out: &mut Vec<Raw<Tracked>>) {
            out.append(&mut self.0);
        }
    }

    fn values(n: &Node<V>) -> Vec<u64> {
        n.body()
            .0
            .iter()
            .map(|t| *Tracked::clone_ref(t).0)
            .collect()
    }

    #[test]
    fn copies_share_items_and_every_item_is_dropped_once_after_its_last_reader() {
        static LIVE: AtomicUsize = AtomicUsize::new(0);
        let base = 0;
        let mut live = Arc::new(Node::new(V((0..10)
            .map(|i| Raw::new(Tracked::new(i, &LIVE)))
            .collect())));
        let snap1 = live.clone();
        {
            let n = Node::make_mut(&mut live);
            let gone = n.body_mut().0.remove(3);
            n.evict(gone);
            n.body_mut().0.push(Raw::new(Tracked::new(100, &LIVE)));
        }
        assert_eq!(
            values(&snap1),
            (0..10).collect::<Vec<_>>(),
            "the snapshot reads its items"
        );
        assert_eq!(
            LIVE.load(Ordering::SeqCst) - base,
            11,
            "nothing freed, one made"
        );
        // A second snapshot of the live node, then more changes and a split.
        let snap2 = live.clone();
        let sib = {
            let n = Node::make_mut(&mut live);
            let gone = n.body_mut().0.remove(0);
            n.evict(gone);
            let moved: Vec<_> = n.body_mut().0.drain(5..).collect();
            n.sibling(V(moved))
        };
        let mut sib = Arc::new(sib);
        drop(snap1);
        assert_eq!(values(&snap2)[..3], [0, 1, 2]);
        // Item 3 went with snap1 (snap2 never had it); item 0 waits for snap2.
        assert_eq!(LIVE.load(Ordering::SeqCst) - base, 10);
        {
            let s = Node::make_mut(&mut sib);
            let gone = s.body_mut().0.pop().expect("item");
            s.evict(gone);
        }
        drop(snap2);
        // Only the live nodes' items remain: 1 2 4 5 6 (live) and 7 8 9 (sibling).
        assert_eq!(values(&live), vec![1, 2, 4, 5, 6]);
        assert_eq!(values(&sib), vec![7, 8, 9]);
        assert_eq!(LIVE.load(Ordering::SeqCst) - base, 8);
        // The live value deleted while a snapshot reads it: items wait for the snapshot.
        let snap3 = live.clone();
        Node::make_mut(&mut live);
        drop(live);
        assert_eq!(values(&snap3), vec![1, 2, 4, 5, 6]);
        drop(snap3);
        drop(sib);
        assert_eq!(LIVE.load(Ordering::SeqCst), base);
    }

    #[test]
    fn an_unshared_node_changes_in_place_and_evicts_at_once() {
        static LIVE: AtomicUsize = AtomicUsize::new(0);
        let base = 0;
        let mut live = Arc::new(Node::new(V(vec![Raw::new(Tracked::new(1, &LIVE))])));
        let before = Arc::as_ptr(&live);
        let n = Node::make_mut(&mut live);
        let gone = n.body_mut().0.pop().expect("item");
        n.evict(gone);
        assert_eq!(Arc::as_ptr(&live), before);
        assert_eq!(LIVE.load(Ordering::SeqCst), base);
    }
}
