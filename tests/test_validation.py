"""Every bad value gets a one-line error, from one schema: a property test over every numeric config key,
objective argument and CLI flag (enumerated from the schema, so keys added later are covered), and the
specific inputs that once gave tracebacks or silent acceptance."""

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ppl_vae import cli
from ppl_vae.config import Config
from ppl_vae.kinds import build_component
from ppl_vae.registry import OBJECTIVES, ConfigError
from ppl_vae.schema import Rule, argument_rules, iter_rules

from .clitools import error_of

NUMERIC_KEYS = [(key, rule) for key, rule in iter_rules(Config) if rule.type in (int, float)]
HOSTILE = st.one_of(
    st.sampled_from([0, -1, -(10**12), 10**30, 2**63, 0.5, -0.0, 1e-300, math.nan, math.inf, -math.inf]),
    st.integers(min_value=-(10**20), max_value=10**20),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(alphabet="abcxyz01-+.e[]{}'\" ", max_size=6),
)
FAST = settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def toml_text(value) -> str:
    """How a user would type ``value`` after ``--set key=``."""
    if isinstance(value, float):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf") if math.isinf(value) else repr(value)
    return str(value)


def accepts(rule: Rule, value) -> bool:
    try:
        rule.check("k", value)
        return True
    except ConfigError:
        return False


def parsed(text: str):
    from ppl_vae.config import _parse_value

    return _parse_value(text)


def run_cli(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def assert_one_line_error(err: str, *needles: str) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ppl-vae: error: "), err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


def test_the_schema_declares_a_rule_for_every_numeric_setting():
    import dataclasses

    def numeric_fields(cls, prefix=""):
        for f in dataclasses.fields(cls):
            sub = f.default_factory if f.default_factory is not dataclasses.MISSING else None
            if isinstance(sub, type) and dataclasses.is_dataclass(sub):
                yield from numeric_fields(sub, f"{prefix}{f.name}.")
            elif f.type in ("int", "float", int, float):
                yield f"{prefix}{f.name}"

    assert sorted(numeric_fields(Config)) == sorted(k for k, _ in NUMERIC_KEYS)
    assert len(NUMERIC_KEYS) >= 12


@pytest.mark.parametrize("key,rule", NUMERIC_KEYS, ids=[k for k, _ in NUMERIC_KEYS])
@FAST
@given(value=HOSTILE)
def test_every_numeric_config_key_is_accepted_as_documented_or_refused_in_one_line(key, rule, value, tmp_path, capsys):
    text = toml_text(value)
    out = tmp_path / "never"
    code, stdout, err = run_cli(capsys, "train", "--dry-run", "--out", out, "--set", f"{key}={text}")
    if accepts(rule, parsed(text)):  # documented acceptance; cross-field checks may still refuse in one line
        assert code == 0 and "nothing written" in stdout or code == 2 and err.count("\n") == 1, (code, err)
    else:
        assert code == 2
        assert_one_line_error(err, f"'{key}' must be {rule.allowed()}")
    assert not out.exists()


OBJECTIVE_ARGUMENTS = [
    (name, arg, rule)
    for name in OBJECTIVES.names()
    for arg, rule in argument_rules(OBJECTIVES.get(name)).items()
    if rule.type in (int, float)
]


@pytest.mark.parametrize("name,arg,rule", OBJECTIVE_ARGUMENTS, ids=[f"{n}.{a}" for n, a, _ in OBJECTIVE_ARGUMENTS])
@FAST
@given(value=HOSTILE)
def test_every_numeric_objective_argument_is_checked_by_its_rule(name, arg, rule, value):
    table = {"name": name, arg: parsed(toml_text(value))}
    if accepts(rule, table[arg]):
        build_component(OBJECTIVES, table, "objective")
    else:
        with pytest.raises(ConfigError) as err:
            build_component(OBJECTIVES, table, "objective")
        assert str(err.value) == f"'objective.{arg}' must be {rule.allowed()}, got {table[arg]!r}"


def numeric_flags():
    """(command, flag, rule) for every option of the parser whose type is a schema rule."""
    import argparse

    parser = cli._parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for command, p in sub.choices.items():
        for action in p._actions:
            rule = getattr(action.type, "rule", None)
            if rule is not None:
                yield command, action.option_strings[-1], rule


FLAGS = list(numeric_flags())


def test_the_parser_checks_every_numeric_flag_by_a_rule():
    flags = {(c, f) for c, f, _ in FLAGS}
    assert {
        ("evaluate", "--iwae-samples"),
        ("evaluate", "--n-test"),
        ("sample", "-n"),
        ("diagnose", "--samples"),
        ("compare", "--n"),
        ("train", "--seed"),
    } <= flags


@pytest.mark.parametrize("command,flag,rule", FLAGS, ids=[f"{c} {f}" for c, f, _ in FLAGS])
@FAST
@given(value=HOSTILE)
def test_every_numeric_flag_is_refused_in_one_line_or_reaches_the_command(command, flag, rule, value, tmp_path, capsys):
    missing = tmp_path / "no-run"
    text = toml_text(value)
    option = f"{flag}={text}" if flag.startswith("--") else f"{flag}{text}"  # so that '-1' is read as a value
    if command == "train":
        argv = ["train", "--dry-run", "--out", tmp_path / "never", option]
    else:
        argv = [command, missing, *([missing] if command == "compare" else []), option]
    code, stdout, err = run_cli(capsys, *argv)
    try:
        number = int(text) if rule.type is int else float(text)
        valid = accepts(rule, number)
    except ValueError:
        valid = False
    if valid:  # the flag was accepted: the command ran and met the missing run (or, for a dry run, passed)
        assert code == 0 if command == "train" else code == 2 and "not found" in err, (code, err)
    else:
        assert code == 2
        # an empty value ('--sbc=', '-n') reaches argparse as a missing argument: still one line
        assert_one_line_error(err, *([f"argument {flag}: must be {rule.allowed()}"] if text else []))
    assert not (tmp_path / "never").exists()


# ---- the inputs of the report, one by one ----------------------------------------------------
@pytest.mark.parametrize(
    "setting,needle",
    [
        ("train.epochs=0", "'train.epochs' must be an integer in [1, 1000000], got 0"),
        ("train.epochs=-1", "'train.epochs' must be an integer in [1, 1000000], got -1"),
        ("train.batch_size=0", "'train.batch_size' must be an integer in [1, 1048576], got 0"),
        ("train.batch_size=-5", "'train.batch_size' must be an integer in [1, 1048576], got -5"),
        ("train.lr=nan", "'train.lr' must be a finite number in (0, 100], got nan"),
        ("model.latent_dim=0", "'model.latent_dim' must be an integer in [1, 4096], got 0"),
    ],
)
def test_values_that_were_accepted_or_crashed_are_refused(setting, needle, tmp_path, capsys):
    code, _, err = run_cli(capsys, "train", "--out", tmp_path / "run", "--set", setting)
    assert code == 2
    assert_one_line_error(err, needle)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "argv,needle",
    [
        (["evaluate", "RUN", "--iwae-samples", "0"], "argument --iwae-samples: must be an integer in [1, 10000000], got '0'"),
        (["evaluate", "RUN", "--iwae-samples", "-1"], "argument --iwae-samples: must be an integer"),
        (["evaluate", "RUN", "--n-test", "-5"], "argument --n-test: must be an integer >= 0 (0 = all test data), got '-5'"),
        (["sample", "RUN", "-n", "0"], "argument -n: must be an integer in [1, 4096], got '0'"),
        (["sample", "RUN", "-n", "-3"], "argument -n: must be an integer in [1, 4096], got '-3'"),
    ],
)
def test_command_line_numbers_are_checked_by_the_parser(argv, needle, tmp_path, capsys):
    code, _, err = run_cli(capsys, *[tmp_path / "run" if a == "RUN" else a for a in argv])
    assert code == 2
    assert_one_line_error(err, needle)


def test_empty_data_files_are_refused_in_one_line(tmp_path, capsys):
    empty = tmp_path / "empty.npy"
    empty.write_bytes(b"")
    code, _, err = run_cli(capsys, "train", "--out", tmp_path / "a", "--set", "data.name='array'", "--set", f"data.path='{empty}'")
    assert code == 2
    assert_one_line_error(err, "is empty (0 bytes)")
    no_rows = tmp_path / "no-rows.npy"
    np.save(no_rows, np.zeros((0, 8, 8), np.uint8))
    code, _, err = run_cli(capsys, "train", "--out", tmp_path / "b", "--set", "data.name='array'", "--set", f"data.path='{no_rows}'")
    assert code == 2
    assert_one_line_error(err, "holds no data (an array of shape (0, 8, 8))")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_python_api_uses_the_same_rules():
    import torch

    from ppl_vae import VAE, fit
    from ppl_vae.objectives import ELBOObjective

    with pytest.raises(ConfigError, match=r"^'epochs' must be an integer in \[1, 1000000\], got 0$"):
        fit(VAE((4,), 2), torch.ones(8, 4), epochs=0, progress=False)
    with pytest.raises(ConfigError, match=r"^'lr' must be a finite number in \(0, 100\], got nan$"):
        fit(VAE((4,), 2), torch.ones(8, 4), lr=float("nan"), progress=False)
    with pytest.raises(ConfigError, match="'ELBOObjective.num_particles' must be an integer >= 1, got 0"):
        ELBOObjective(num_particles=0)
    cfg = Config()
    cfg.train.epochs = -3  # set in Python, past the parser: validate() applies the same rule
    with pytest.raises(ConfigError, match=r"'train.epochs' must be an integer in \[1, 1000000\], got -3"):
        cfg.validate()


def test_a_misspelt_objective_argument_names_the_accepted_ones():
    with pytest.raises(
        ConfigError,
        match="objective 'factor-vae' has no argument 'gama' \\(did you mean 'gamma'\\?\\); it accepts: gamma, hidden, layers, lr",
    ):
        build_component(OBJECTIVES, {"name": "factor-vae", "gama": 3}, "objective")


def test_an_error_of_the_real_command_is_one_line(tmp_path):
    assert "'train.epochs' must be an integer" in error_of("train", "--out", tmp_path / "r", "--set", "train.epochs=0")


def test_the_readme_documents_every_setting_as_the_schema_states_it():
    from pathlib import Path

    from ppl_vae.schema import describe_rules

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    assert describe_rules(list(iter_rules(Config))) in readme
