//! The score order of a big sorted set: sorted leaves of (score, member), grouped into
//! branches, both behind `Arc`s.
//!
//! Owns ordering by (score, member bytes), with -0 and 0 equal as the servers compare
//! them. An insert or removal binary-searches the branches and the leaves (O(log n)) and
//! edits one leaf (O(leaf)); a leaf past [`LEAF_MAX`] splits into its branch, a branch past
//! [`BRANCH_MAX`] leaves splits into the root. Popping either end is O(leaf), finding a
//! rank walks leaf sizes (O(n / leaf)). Cloning shares every branch, so the first write to
//! an index a snapshot still holds copies the root's handles, one branch and one leaf's
//! slots (a 2 M-member set: ~60 + 256 handles, not 15 000; the pairs stay shared,
//! [`super::alias`]); a walker of its own copy
//! ([`ZIndex::visit_rev_releasing`]) lets go of each leaf once it has seen it. A leaf: it
//! never looks at members' scores anywhere but here, and never holds a NaN (callers
//! refuse them).

use std::cmp::Ordering;
use std::collections::VecDeque;
use std::sync::Arc;

use super::alias::{Body, Node, Raw};
use super::thin::Thin;

pub const LEAF_MAX: usize = 256;
pub const BRANCH_MAX: usize = 256;

type Pair = (f64, Thin);

/// A leaf's pairs in order. Deques, so that inserting at either end is O(1): a file lists
/// a sorted set highest first, so loading one inserts every member at the front. Behind a
/// [`Node`]: a snapshot's leaf and the live copy share their pairs (see [`super::alias`]).
#[derive(Default)]
struct Leaf(VecDeque<Raw<Pair>>);

impl Body for Leaf {
    type Item = Pair;
    fn alias(&self) -> Leaf {
        Leaf(self.0.clone())
    }
    fn drain_into(&mut self, out: &mut Vec<Raw<Pair>>) {
        out.extend(self.0.drain(..));
    }
}

impl Leaf {
    fn len(&self) -> usize {
        self.0.len()
    }
    fn iter(&self) -> impl DoubleEndedIterator<Item = (f64, &[u8])> + '_ {
        self.0.iter().map(|p| (p.0, &p.1[..]))
    }
    fn search(&self, score: f64, member: &[u8]) -> Result<usize, usize> {
        self.0
            .binary_search_by(|p| cmp((p.0, &p.1), (score, member)))
    }
}

type Branch = VecDeque<Arc<Node<Leaf>>>;

fn cmp(a: (f64, &[u8]), b: (f64, &[u8])) -> Ordering {
    a.0.partial_cmp(&b.0)
        .unwrap_or(Ordering::Equal)
        .then_with(|| a.1.cmp(b.1))
}

/// Whether every element of `l` sorts before (score, member).
fn before(l: &Node<Leaf>, score: f64, member: &[u8]) -> bool {
    l.body()
        .0
        .back()
        .is_some_and(|p| cmp((p.0, &p.1), (score, member)) == Ordering::Less)
}

/// `Clone` shares every branch: for a snapshot's read-only view. A second live value
/// (COPY) takes [`ZIndex::deep_clone`].
#[derive(Clone, Default)]
pub struct ZIndex {
    branches: VecDeque<Arc<Branch>>,
    len: usize,
}

impl ZIndex {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// An index of fresh copies of every pair, sharing nothing with this one.
    pub fn deep_clone(&self) -> ZIndex {
        let branches = self
            .branches
            .iter()
            .map(|b| {
                Arc::new(
                    b.iter()
                        .map(|l| {
                            let pairs = l.body().iter().map(|(s, m)| Raw::new((s, Thin::new(m))));
                            Arc::new(Node::new(Leaf(pairs.collect())))
                        })
                        .collect(),
                )
            })
            .collect();
        ZIndex {
            branches,
            len: self.len,
        }
    }

    /// The (branch, leaf) that holds, or would hold, (score, member); the index is not
    /// empty.
    fn locate(&self, score: f64, member: &[u8]) -> (usize, usize) {
        let bi = self
            .branches
            .partition_point(|b| b.back().is_some_and(|l| before(l, score, member)))
            .min(self.branches.len() - 1);
        let b = &self.branches[bi];
        let li = b
            .partition_point(|l| before(l, score, member))
            .min(b.len() - 1);
        (bi, li)
    }

    pub fn insert(&mut self, score: f64, member: &[u8]) {
        if self.branches.is_empty() {
            self.branches
                .push_back(Arc::new(VecDeque::from([Arc::new(Node::new(
                    Leaf::default(),
                ))])));
        }
        let (bi, li) = self.locate(score, member);
        let branch = Arc::make_mut(&mut self.branches[bi]);
        let node = Node::make_mut(&mut branch[li]);
        let leaf = node.body_mut();
        let at = leaf.search(score, member).unwrap_or_else(|at| at);
        leaf.0.insert(at, Raw::new((score, member.into())));
        self.len += 1;
        if leaf.len() > LEAF_MAX {
            let tail = leaf.0.split_off(leaf.len() / 2);
            // The moved pairs may still be read by the snapshots this leaf's pairs are.
            let tail = node.sibling(Leaf(tail));
            branch.insert(li + 1, Arc::new(tail));
            if branch.len() > BRANCH_MAX {
                let tail = branch.split_off(branch.len() / 2);
                self.branches.insert(bi + 1, Arc::new(tail));
            }
        }
    }

    /// Remove (score, member); false if it was not there.
    pub fn remove(&mut self, score: f64, member: &[u8]) -> bool {
        if self.branches.is_empty() {
            return false;
        }
        let (bi, li) = self.locate(score, member);
        // Look before copying: removing what is absent must not copy shared nodes.
        let Ok(at) = self.branches[bi][li].body().search(score, member) else {
            return false;
        };
        let branch = Arc::make_mut(&mut self.branches[bi]);
        let node = Node::make_mut(&mut branch[li]);
        if let Some(gone) = node.body_mut().0.remove(at) {
            node.evict(gone);
        }
        self.len -= 1;
        if node.body().len() == 0 {
            branch.remove(li);
            if branch.is_empty() {
                self.branches.remove(bi);
            }
        }
        true
    }

    /// The lowest (`min`) or highest element.
    pub fn end(&self, min: bool) -> Option<(f64, &[u8])> {
        let e = if min {
            self.branches.front()?.front()?.body().0.front()
        } else {
            self.branches.back()?.back()?.body().0.back()
        };
        e.map(|p| (p.0, &p.1[..]))
    }

    fn leaves(&self) -> impl DoubleEndedIterator<Item = &Leaf> + '_ {
        self.branches
            .iter()
            .flat_map(|b| b.iter().map(|l| l.body()))
    }

    /// Every element from the lowest.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = (f64, &[u8])> + '_ {
        self.leaves().flat_map(Leaf::iter)
    }

    /// Every element from the highest (as the servers write a skiplist), consuming the
    /// index: each leaf is let go as soon as `f` has seen it, so a live index sharing it
    /// (a snapshot's view walks its own copy) changes it in place from then on.
    pub fn visit_rev_releasing<E>(
        self,
        mut f: impl FnMut(f64, &[u8]) -> Result<(), E>,
    ) -> Result<(), E> {
        for branch in self.branches.into_iter().rev() {
            let branch = Arc::try_unwrap(branch).unwrap_or_else(|b| (*b).clone());
            for leaf in branch.into_iter().rev() {
                leaf.body().iter().rev().try_for_each(|(s, m)| f(s, m))?;
            }
        }
        Ok(())
    }

    /// Leaves a write would copy first, their own or their branch's handle being shared
    /// with another index (a clone, a snapshot's view). For tests and diagnostics; O(leaves).
    pub fn shared_leaves(&self) -> usize {
        self.branches
            .iter()
            .map(|b| {
                if Arc::strong_count(b) > 1 {
                    b.len()
                } else {
                    b.iter().filter(|l| Arc::strong_count(l) > 1).count()
                }
            })
            .sum()
    }

    /// Elements in order from the first at or after (score, member): a seek, then a walk.
    pub fn iter_from<'a>(
        &'a self,
        score: f64,
        member: &'a [u8],
    ) -> impl Iterator<Item = (f64, &'a [u8])> + 'a {
        let (bi, li) = if self.branches.is_empty() {
            (0, 0)
        } else {
            self.locate(score, member)
        };
        self.branches
            .iter()
            .skip(bi)
            .enumerate()
            .flat_map(move |(k, b)| b.iter().skip(if k == 0 { li } else { 0 }))
            .flat_map(|l| l.body().iter())
            .skip_while(move |(s, m)| cmp((*s, m), (score, member)) == Ordering::Less)
    }

    /// The elements of ranks `start..=stop` (0 = lowest), clamped; walks leaf sizes.
    pub fn range_by_rank(&self, start: usize, stop: usize) -> Vec<(f64, Box<[u8]>)> {
        let mut out = Vec::new();
        let mut base = 0;
        for l in self.leaves() {
            let end = base + l.len();
            if end > start && base <= stop {
                let from = start.saturating_sub(base);
                let to = (stop + 1 - base).min(l.len());
                out.extend(l.0.range(from..to).map(|p| (p.0, Box::from(&p.1[..]))));
            }
            if base > stop {
                break;
            }
            base = end;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_servers_order_through_splits() {
        let mut z = ZIndex::default();
        let mut live: std::collections::HashMap<Vec<u8>, f64> = Default::default();
        let mut x = 12345u64;
        for i in 0..200_000 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let s = ((x >> 40) % 500) as f64 - 250.0;
            let m = format!("m{}", (x >> 20) % 90_000).into_bytes();
            if let Some(os) = live.remove(&m) {
                assert!(z.remove(os, &m));
            }
            if i % 4 != 3 {
                z.insert(s, &m);
                live.insert(m, s);
            }
        }
        // Both levels split (and leaves and branches emptied on the way).
        assert!(z.branches.len() >= 2);
        let mut model: Vec<(f64, Vec<u8>)> = live.into_iter().map(|(m, s)| (s, m)).collect();
        model.sort_by(|a, b| cmp((a.0, &a.1), (b.0, &b.1)));
        let got: Vec<(f64, Vec<u8>)> = z.iter().map(|(s, m)| (s, m.to_vec())).collect();
        assert_eq!(got, model);
        assert_eq!(z.len(), model.len());
        assert_eq!(z.end(true).map(|(s, _)| s), model.first().map(|p| p.0));
        let r = z.range_by_rank(100, 1000);
        assert_eq!(r.len(), 901);
        assert_eq!(&r[0].1[..], &model[100].1[..]);
        assert_eq!(&r[900].1[..], &model[1000].1[..]);
        assert!(!z.remove(1e9, b"absent"));
        for (s, m) in [
            (-250.0, &b""[..]),
            (-3.0, b"m5"),
            (0.0, b""),
            (249.0, b"zz"),
            (1e9, b""),
        ] {
            let want: Vec<(f64, Vec<u8>)> = model
                .iter()
                .filter(|(ms, mm)| cmp((*ms, mm), (s, m)) != Ordering::Less)
                .take(500)
                .cloned()
                .collect();
            let got: Vec<(f64, Vec<u8>)> = z
                .iter_from(s, m)
                .take(500)
                .map(|(s, m)| (s, m.to_vec()))
                .collect();
            assert_eq!(got, want, "from ({s}, {m:?})");
        }
        // Emptied from both ends: no empty leaf or branch is left behind.
        let mut prev = f64::NEG_INFINITY;
        while let Some((s, m)) = z.end(true).map(|(s, m)| (s, m.to_vec())) {
            assert!(s >= prev);
            prev = s;
            assert!(z.remove(s, &m));
            if let Some((s, m)) = z.end(false).map(|(s, m)| (s, m.to_vec())) {
                assert!(z.remove(s, &m));
            }
        }
        assert!(z.is_empty() && z.branches.is_empty());
    }

    #[test]
    fn a_releasing_visit_goes_highest_first_and_lets_go_of_each_leaf() {
        let mut live = ZIndex::default();
        for i in 0..100_000u32 {
            live.insert(f64::from(i % 977), &i.to_le_bytes());
        }
        assert!(live.branches.len() >= 2 && live.shared_leaves() == 0);
        let view = live.clone();
        let want: Vec<(f64, Vec<u8>)> = view.iter().rev().map(|(s, m)| (s, m.to_vec())).collect();
        let mut seen = Vec::new();
        let mut shared = Vec::new();
        view.visit_rev_releasing::<()>(|s, m| {
            seen.push((s, m.to_vec()));
            shared.push(live.shared_leaves());
            Ok(())
        })
        .unwrap();
        assert_eq!(seen, want);
        assert!(shared.windows(2).all(|w| w[1] <= w[0]));
        assert!(shared[0] > 50 && *shared.last().unwrap() <= 1);
        assert_eq!(live.shared_leaves(), 0, "a write now copies nothing");
    }

    #[test]
    fn zero_and_negative_zero_compare_equal_then_by_member() {
        let mut z = ZIndex::default();
        z.insert(0.0, b"b");
        z.insert(-0.0, b"a");
        z.insert(0.0, b"c");
        let order: Vec<&[u8]> = z.iter().map(|(_, m)| m).collect();
        assert_eq!(order, vec![&b"a"[..], b"b", b"c"]);
        assert!(z.remove(-0.0, b"b"), "found by numeric equality");
    }
}
