"""Whole-column helpers (shared/columns.py): the plan finds the rows needing a decision with them."""

from shared.columns import blank_positions, none_positions, picker, present_positions, truthy_positions


def test_positions_name_exactly_the_rows_of_their_kind():
    column = ["a", None, "", "b", None, " "]
    assert none_positions(column) == [1, 4]
    assert present_positions(column) == [0, 2, 3, 5]
    assert blank_positions(column) == [1, 2, 4]
    assert truthy_positions(column) == [0, 3, 5]
    assert none_positions([]) == present_positions([]) == blank_positions([]) == truthy_positions([]) == []


def test_a_picker_gives_a_tuple_whatever_the_number_of_rows():
    """itemgetter returns a bare value for one index: a picker never does."""
    column = ["a", "b", "c"]
    assert picker([2, 0])(column) == ("c", "a")
    assert picker([1])(column) == ("b",)
    assert picker([])(column) == ()
