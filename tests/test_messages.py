"""Names printed by the CLI cannot drive the terminal or forge lines (issue 22, point 13)."""

from surge.cli.messages import printable, printable_lines


def test_control_and_bidi_characters_are_escaped():
    assert printable("a\x1b[31mred\x1b[0m.png") == "a\\x1b[31mred\\x1b[0m.png"
    assert printable("x.png\nsurge: 9 upscaled, 0 failed") == "x.png\\nsurge: 9 upscaled, 0 failed"
    assert printable("a\rb\tc\x00d\x7fe\x9bf") == "a\\rb\\tc\\x00d\\x7fe\\x9bf"
    assert printable("evil\u202egnp.exe") == "evil\\u202egnp.exe"
    assert printable("Zürich 東京 🙂.png") == "Zürich 東京 🙂.png"  # ordinary text is kept


def test_tables_keep_their_line_breaks():
    assert printable_lines("| a\x1b |\n| b |") == "| a\\x1b |\n| b |"
