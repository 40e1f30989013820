"""The command line's start: help and argument errors without PyTorch, broken commands reported."""
import subprocess
import sys
import textwrap

import pytest

from gleansr import cli

PROBE = textwrap.dedent("""
    import sys
    from gleansr.cli import main
    try:
        code = main(sys.argv[1:])
    except SystemExit as exc:
        code = exc.code
    print("torch loaded:", "torch" in sys.modules, file=sys.stderr)
    sys.exit(code)
""")


def probe(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", PROBE, *argv], capture_output=True, text=True, timeout=120)


def _cases():
    yield pytest.param(["--help"], 0, id="gleansr --help")
    yield pytest.param(["upscale"], 2, id="upscale without inputs")
    yield pytest.param(["upscale", "x.png", "--precision", "fp8"], 2, id="upscale bad choice")
    for name in cli.COMMANDS:
        yield pytest.param([name, "--help"], 0, id=f"{name} --help")


@pytest.mark.parametrize("argv, code", _cases())
def test_help_and_argument_errors_do_not_import_torch(argv, code):
    proc = probe(*argv)
    assert proc.returncode == code, proc.stderr
    assert "usage: gleansr" in proc.stdout + proc.stderr
    assert "torch loaded: False" in proc.stderr


def test_top_level_help_lists_every_command():
    proc = probe("--help")
    for name, (_, help_text) in cli.COMMANDS.items():
        assert name in proc.stdout and help_text.split()[0] in proc.stdout


@pytest.mark.parametrize("name", list(cli.COMMANDS))
def test_the_table_matches_each_command_module(name):
    module = cli.load_command(name)
    assert (module.NAME, module.HELP) == (name, cli.COMMANDS[name][1])
    assert callable(module.add_arguments) and callable(module.run)


def test_a_command_that_fails_to_import_is_an_error_not_a_missing_command(tmp_path, monkeypatch, capsys):
    (tmp_path / "broken.py").write_text("import not_a_real_package\nNAME = 'broken'\n")
    import gleansr.commands

    monkeypatch.setattr(gleansr.commands, "__path__", [*gleansr.commands.__path__, str(tmp_path)])
    monkeypatch.setitem(cli.COMMANDS, "broken", ("broken", "a command whose module is broken"))
    assert cli.main(["broken", "--flag"]) == 2
    err = capsys.readouterr().err
    assert err.strip() == ("gleansr: error: command 'broken' cannot be loaded (gleansr.commands.broken: "
                           "ModuleNotFoundError: No module named 'not_a_real_package'); the installation is "
                           "broken, reinstall gleansr")
    with pytest.raises(SystemExit):
        cli.main(["--help"])  # the others are still listed, without importing any
    assert "broken" in capsys.readouterr().out
