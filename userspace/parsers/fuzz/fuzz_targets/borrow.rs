//! The borrow invariant shared by the targets: parsers hand out slices of their input,
//! and the data plane turns them into offsets by pointer arithmetic, so a slice that
//! points anywhere else (a constant, a copy) would become a wrong offset.

/// Panics unless `part` lies inside `input`; an empty part may sit at its very end.
pub fn assert_inside(input: &[u8], part: &[u8], what: &str) {
    let input_start = input.as_ptr() as usize;
    let part_start = part.as_ptr() as usize;
    let inside = part_start >= input_start && part_start + part.len() <= input_start + input.len();
    assert!(inside, "{what} ({part:?}) is not a sub-slice of the input");
}

/// As [`assert_inside`], but lets an empty part point anywhere: the metric parsers
/// use `""` for absent sections, which carries no offset to get wrong.
pub fn assert_inside_if_not_empty(input: &[u8], part: &[u8], what: &str) {
    if !part.is_empty() {
        assert_inside(input, part, what);
    }
}
