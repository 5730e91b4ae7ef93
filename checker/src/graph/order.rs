//! The store's order on versions, exactly as history-format.md ("Versions") defines it.
//!
//! A version's history H(v) is the events of its clock, plus its dot where it has one. a precedes b
//! when H(a) is a strict subset of H(b). Per node, the clock is a prefix of events (n, 1..=c); a dot
//! one past the prefix extends it, a dot further out is a lone extra event. So a dotted version
//! `{dot:[n1,4], clock:{}}` has H = {(n1,4)} and is concurrent with `{dot:[n1,3], clock:{}}`, where
//! plain clocks {n1:4} and {n1:3} would be ordered: comparing vectors would invent an order.

use crate::history::{Sym, VerId, Versions};

/// A version's clock and dot, borrowed from the arena.
#[derive(Debug, Clone, Copy)]
pub(crate) struct VersionView<'a> {
    pub clock: &'a [(Sym, u64)],
    pub dot: Option<(Sym, u64)>,
}

impl<'a> VersionView<'a> {
    pub(crate) fn of(versions: &'a Versions, v: VerId) -> VersionView<'a> {
        VersionView {
            clock: versions.clock(v),
            dot: versions.rec(v).dot,
        }
    }

    /// The clock's counter for `node` (0 when absent).
    pub(crate) fn clock_of(&self, node: Sym) -> u64 {
        match self.clock.binary_search_by_key(&node, |&(n, _)| n) {
            Ok(i) => self.clock[i].1,
            Err(_) => 0,
        }
    }

    /// The largest c such that all of (node, 1..=c) are in H: the clock's entry, extended by the dot
    /// when the dot is the next event. A counter may be any u64: a clock entry at u64::MAX has no
    /// next event (checked arithmetic, never an overflow).
    pub(crate) fn prefix(&self, node: Sym) -> u64 {
        let c = self.clock_of(node);
        match self.dot {
            Some((n, k)) if n == node && c.checked_add(1) == Some(k) => k,
            _ => c,
        }
    }

    /// The dot, when it is not part of its node's prefix: it lies beyond the prefix by more than one,
    /// or its counter is 0 (no clock holds (n, 0): a clock stands for (n, 1..=c)). H's lone extra
    /// event.
    pub(crate) fn extra(&self) -> Option<(Sym, u64)> {
        let (n, k) = self.dot?;
        let beyond = self.clock_of(n).checked_add(1).is_some_and(|next| k > next);
        (k == 0 || beyond).then_some((n, k))
    }

    /// Whether the event (node, counter) is in H.
    pub(crate) fn has_event(&self, node: Sym, counter: u64) -> bool {
        (1..=self.prefix(node)).contains(&counter) || self.extra() == Some((node, counter))
    }

    /// Whether H(self) is a subset of H(other).
    pub(crate) fn within(&self, other: &VersionView) -> bool {
        // A prefix (n, 1..=c) lies in H(other) only if c <= other's prefix: other's extra event is never
        // the one right after its prefix, so it cannot fill the gap.
        self.clock.iter().all(|&(n, c)| c <= other.prefix(n))
            && self.dot.is_none_or(|(n, k)| other.has_event(n, k))
    }
}

/// Whether the store orders version `a` before version `b`: H(a) is a strict subset of H(b).
pub(crate) fn precedes(versions: &Versions, a: VerId, b: VerId) -> bool {
    if a == b {
        return false;
    }
    let (va, vb) = (VersionView::of(versions, a), VersionView::of(versions, b));
    va.within(&vb) && !vb.within(&va)
}

#[cfg(test)]
mod tests {
    use super::*;

    const N1: Sym = Sym(1);
    const N2: Sym = Sym(2);

    fn v(versions: &mut Versions, dot: Option<(Sym, u64)>, clock: &[(Sym, u64)]) -> VerId {
        versions.intern(dot, clock)
    }

    #[test]
    fn dotted_versions_with_empty_contexts_are_concurrent() {
        // history-format.md, "Versions": {dot:[n1,3],clock:{}} and {dot:[n1,4],clock:{}} are concurrent.
        let mut vs = Versions::default();
        let a = v(&mut vs, Some((N1, 3)), &[]);
        let b = v(&mut vs, Some((N1, 4)), &[]);
        assert!(!precedes(&vs, a, b));
        assert!(!precedes(&vs, b, a));
        // ... although the plain clocks {n1:3} and {n1:4} are ordered.
        let pa = v(&mut vs, None, &[(N1, 3)]);
        let pb = v(&mut vs, None, &[(N1, 4)]);
        assert!(precedes(&vs, pa, pb));
        assert!(!precedes(&vs, pb, pa));
    }

    #[test]
    fn a_context_that_covers_the_dot_orders() {
        let mut vs = Versions::default();
        let a = v(&mut vs, Some((N1, 3)), &[]);
        let b = v(&mut vs, Some((N2, 1)), &[(N1, 3)]);
        assert!(precedes(&vs, a, b));
        assert!(!precedes(&vs, b, a));
        // The context must cover the dot and the clock of the earlier version.
        let c = v(&mut vs, Some((N1, 5)), &[(N2, 1)]);
        let d = v(&mut vs, Some((N2, 2)), &[(N1, 5)]);
        assert!(
            !precedes(&vs, c, d),
            "d's clock covers c's dot but not c's clock"
        );
        let e = v(&mut vs, Some((N2, 2)), &[(N1, 5), (N2, 1)]);
        assert!(precedes(&vs, c, e));
    }

    #[test]
    fn a_dot_next_to_the_clock_extends_it() {
        let mut vs = Versions::default();
        let a = v(&mut vs, Some((N1, 1)), &[]);
        let b = v(&mut vs, Some((N1, 2)), &[(N1, 1)]);
        let c = v(&mut vs, None, &[(N1, 2)]);
        assert!(precedes(&vs, a, b));
        // b and the plain clock {n1:2} stand for the same events: neither precedes.
        assert!(!precedes(&vs, b, c));
        assert!(!precedes(&vs, c, b));
        assert!(precedes(&vs, a, c));
    }

    #[test]
    fn a_reused_dot_is_dominated_by_its_old_successors() {
        // A node that lost its disk and restarted its counters mints (n1,1) again; versions whose context
        // covers the old (n1,1) now dominate the new write.
        let mut vs = Versions::default();
        let reborn = v(&mut vs, Some((N1, 1)), &[]);
        let old_successor = v(&mut vs, Some((N2, 1)), &[(N1, 1)]);
        assert!(precedes(&vs, reborn, old_successor));
    }
}
