//! The bounded, counted lists both learners keep (`coaccess.rs`: a source's partners;
//! `template.rs`: a collection's templates): an observation counts once more for the entry it
//! matches, else takes a free place, else replaces the weakest entry if that was seen only
//! once — so a list never grows past its bound and an established entry is never pushed out
//! by a one-off.

/// An entry counting how often it was observed.
pub(super) trait Counted {
    /// Times observed.
    fn seen(&self) -> u32;
    /// Counts one more observation.
    fn count(&mut self);
}

/// Counts one observation in `items` (at most `cap` of them): the entry `matches` finds, or
/// `fresh()` (an entry seen once).
pub(super) fn observe<T: Counted>(
    items: &mut Vec<T>,
    cap: usize,
    matches: impl Fn(&T) -> bool,
    fresh: impl FnOnce() -> T,
) {
    if let Some(item) = items.iter_mut().find(|i| matches(i)) {
        item.count();
        return;
    }
    if items.len() < cap {
        items.push(fresh());
    } else if let Some(weakest) = items.iter_mut().min_by_key(|i| i.seen())
        && weakest.seen() <= 1
    {
        *weakest = fresh();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Item(char, u32);

    impl Counted for Item {
        fn seen(&self) -> u32 {
            self.1
        }
        fn count(&mut self) {
            self.1 = self.1.saturating_add(1);
        }
    }

    fn add(items: &mut Vec<Item>, c: char) {
        observe(items, 2, |i| i.0 == c, || Item(c, 1));
    }

    #[test]
    fn a_full_list_replaces_only_a_one_off() {
        let mut items = Vec::new();
        add(&mut items, 'a');
        add(&mut items, 'a');
        add(&mut items, 'b');
        assert_eq!(
            items.iter().map(|i| (i.0, i.1)).collect::<Vec<_>>(),
            [('a', 2), ('b', 1)]
        );
        // Full: 'c' takes the place of 'b', seen once; 'a' stays.
        add(&mut items, 'c');
        assert_eq!(
            items.iter().map(|i| (i.0, i.1)).collect::<Vec<_>>(),
            [('a', 2), ('c', 1)]
        );
        // Once every entry was seen twice, a newcomer is not counted.
        add(&mut items, 'c');
        add(&mut items, 'd');
        assert_eq!(
            items.iter().map(|i| (i.0, i.1)).collect::<Vec<_>>(),
            [('a', 2), ('c', 2)]
        );
    }
}
