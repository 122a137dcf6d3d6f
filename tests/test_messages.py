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


def test_other_commands_escape_names_in_errors_and_tables(tmp_path, capsys):
    import json

    from surge.cli.main import main
    from surge.evaluation.runner import ImageResult, SetResult

    assert main(["eval", "--model", "bicubic", "--data", str(tmp_path / "no\x1b[2Jsuch")]) == 2
    err = capsys.readouterr().err
    assert "\x1b" not in err and "no\\x1b[2Jsuch" in err and err.count("\n") == 1
    per_image = {f"i\x1b[31m{k}": ImageResult(psnr_y=20.0 + k, ssim_y=0.5, seconds=0.0) for k in range(5)}
    result = SetResult(name="Set\x1b[5m\n| forged |", model="m\x1b]0;title\x07", per_image=per_image)
    path = tmp_path / "a.json"
    path.write_text(json.dumps({result.name: result.to_dict()}))
    assert main(["diff", str(path), str(path)]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\x07" not in out and "Set\\x1b[5m\\n| forged |" in out
    assert not any(line.startswith("| forged") for line in out.splitlines())
