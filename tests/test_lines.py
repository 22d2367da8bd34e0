"""zss_core.lines.bounded_lines: lines up to the limit come whole, a longer one becomes LineTooLong after its
rest is skipped, and the line after it is read as usual (issue 12, defect 10)."""

import io

from zss_core.lines import DISCARD_CHUNK, LineTooLong, bounded_lines


def lines(data: bytes, limit: int) -> list:
    return list(bounded_lines(io.BytesIO(data), limit))


def test_lines_within_the_limit_come_whole_with_their_newline():
    assert lines(b"ab\ncd\r\n\nlast", 4) == [b"ab\n", b"cd\r\n", b"\n", b"last"]


def test_a_line_of_exactly_the_limit_is_kept():
    assert lines(b"abcd\nef\n", 4) == [b"abcd\n", b"ef\n"]
    assert lines(b"abcd\r\nef\n", 4) == [b"abcd\r\n", b"ef\n"]


def test_a_line_one_byte_over_is_refused_and_the_next_line_survives():
    assert lines(b"abcde\nef\n", 4) == [LineTooLong(6, 4), b"ef\n"]
    assert lines(b"abcdef\nef\n", 4) == [LineTooLong(7, 4), b"ef\n"]


def test_a_long_line_is_skipped_in_pieces_to_its_newline():
    size = 3 * DISCARD_CHUNK + 17
    assert lines(b"x" * size + b"\n" + b"next\n", 1000) == [LineTooLong(size + 1, 1000), b"next\n"]


def test_a_long_last_line_without_a_newline_ends_the_input():
    assert lines(b"ok\n" + b"y" * 5000, 100) == [b"ok\n", LineTooLong(5000, 100)]
