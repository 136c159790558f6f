"""Variant strings (parse, canonical form, sweeps, errors) and typed backend options."""
import pytest

from comparator import backends
from comparator.backends.options import Option, resolve
from comparator.errors import UsageError
from comparator.variant import Variant, expand, parse_list


@pytest.mark.parametrize("spec, canonical", [
    ("ort", "ort"),
    ("ort:opt=disable", "ort:opt=disable"),
    ("ort:threads=2:opt=all", "ort:opt=all:threads=2"),
    ("  ref:dtype=float64 ", "ref:dtype=float64"),
    ("tvm:mattr=+avx2+fma", "tvm:mattr=+avx2+fma"),
    ("my_plugin.x-1:b=2:a=1:c=3", "my_plugin.x-1:a=1:b=2:c=3"),
])
def test_canonical_round_trip(spec, canonical):
    v = Variant.parse(spec)
    assert str(v) == canonical
    assert Variant.parse(str(v)) == v
    assert str(Variant.parse(str(v))) == canonical


def test_key_order_does_not_change_identity():
    a, b = Variant.parse("ort:opt=all:threads=2"), Variant.parse("ort:threads=2:opt=all")
    assert a == b and hash(a) == hash(b)
    assert a.options == (("opt", "all"), ("threads", "2"))
    assert a.option_dict == {"opt": "all", "threads": "2"}
    assert a.backend == "ort"


def test_slug_is_file_safe_and_distinct():
    slugs = {Variant.parse(s).slug for s in ["ort", "ort:opt=all", "ort:opt=basic", "tvm:mattr=+avx2/x"]}
    assert len(slugs) == 4
    for slug in slugs:
        assert "/" not in slug and ":" not in slug and " " not in slug


def test_sweep_is_cartesian_product_in_written_order():
    got = [str(v) for v in expand("ort:opt=basic|all:threads=1|2|4")]
    assert got == ["ort:opt=basic:threads=1", "ort:opt=basic:threads=2", "ort:opt=basic:threads=4",
                   "ort:opt=all:threads=1", "ort:opt=all:threads=2", "ort:opt=all:threads=4"]
    assert [str(v) for v in expand("ref")] == ["ref"]


def test_parse_refuses_a_sweep():
    with pytest.raises(UsageError, match="sweep of 2 variants"):
        Variant.parse("ort:opt=basic|all")


def test_parse_list_splits_commas_expands_and_keeps_order():
    got = parse_list(["ort,ref", "ort:opt=disable|basic", ",  ,ref:dtype=float64"])
    assert [str(v) for v in got] == ["ort", "ref", "ort:opt=disable", "ort:opt=basic", "ref:dtype=float64"]


@pytest.mark.parametrize("specs", [["ort,ort"], ["ort:opt=all:threads=1", "ort:threads=1:opt=all"],
                                   ["ort:opt=all|all"], ["ort:opt=basic", "ort:opt=all|basic"]])
def test_duplicates_are_refused(specs):
    with pytest.raises(UsageError, match="given twice"):
        parse_list(specs)


@pytest.mark.parametrize("spec, fragment", [
    ("", "empty variant"),
    ("   ", "empty variant"),
    ("ort,ref", "contains a comma"),
    ("1ort", "is not a backend name"),
    (":opt=all", "is not a backend name"),
    ("ort:opt", "is not KEY=VALUE"),
    ("ort:opt=", "is not KEY=VALUE"),
    ("ort:=all", "is not KEY=VALUE"),
    ("ort:", "is not KEY=VALUE"),
    ("ort:opt=all:opt=basic", "given twice"),
    ("ort:opt=a b", "bad value"),
    ("ort:opt=all|", "bad value ''"),
    ("ort:opt=x=y", "bad value"),
])
def test_bad_specs(spec, fragment):
    with pytest.raises(UsageError) as info:
        Variant.parse(spec)
    assert fragment in info.value.message
    assert info.value.exit_code == 2


def test_no_variants():
    with pytest.raises(UsageError, match="no variants"):
        parse_list([" , "])


def test_errors_carry_hints():
    with pytest.raises(UsageError) as info:
        Variant.parse("ort:opt")
    assert info.value.hint and "KEY=VALUE" in info.value.hint
    assert "hint:" in str(info.value)


# ---- options: every wrong name or value lists what is valid

def test_resolve_fills_defaults_and_types():
    backend, options = backends.resolve_variant(Variant.parse("ort:threads=3:deterministic=on"))
    assert backend.name == "ort"
    assert options["threads"] == 3 and options["deterministic"] is True
    assert options["opt"] == "all" and options["ep"] == "cpu"
    assert set(options) == {o.name for o in backend.options}


def test_unknown_backend_lists_available():
    with pytest.raises(UsageError) as info:
        backends.resolve_variant(Variant.parse("nosuchbackend"))
    assert "unknown backend 'nosuchbackend'" in info.value.message
    assert "ort" in info.value.hint and "ref" in info.value.hint


def test_unknown_option_lists_valid_options():
    with pytest.raises(UsageError) as info:
        backends.resolve_variant(Variant.parse("ort:optimisation=all"))
    assert "no option 'optimisation'" in info.value.message
    for name in ("opt", "threads", "ep", "deterministic"):
        assert name in info.value.hint


def test_bad_choice_lists_valid_values():
    with pytest.raises(UsageError) as info:
        backends.resolve_variant(Variant.parse("ort:opt=fast"))
    assert "opt='fast'" in info.value.message
    assert info.value.hint == "valid values: disable|basic|extended|layout|all"
    with pytest.raises(UsageError) as info:
        backends.resolve_variant(Variant.parse("ref:dtype=float16"))
    assert info.value.hint == "valid values: model|float64"


@pytest.mark.parametrize("spec, fragment", [("ort:threads=two", "not an integer"),
                                            ("ort:threads=-1", "must be >= 0"),
                                            ("ort:deterministic=maybe", "not a boolean")])
def test_bad_typed_values(spec, fragment):
    with pytest.raises(UsageError, match=fragment):
        backends.resolve_variant(Variant.parse(spec))


def test_backend_validate_rejects_meaningless_combinations():
    with pytest.raises(UsageError, match="applies only to ep=cuda"):
        backends.resolve_variant(Variant.parse("ort:tf32=off"))
    # the same option is fine once it applies
    _, options = backends.resolve_variant(Variant.parse("ort:ep=cuda:tf32=off"))
    assert options["tf32"] is False


@pytest.mark.parametrize("text, value", [("on", True), ("1", True), ("TRUE", True), ("yes", True),
                                         ("off", False), ("0", False), ("false", False), ("No", False)])
def test_bool_spellings(text, value):
    assert Option("flag", bool, False, "a flag").parse("x", text) is value


def test_float_option_and_descriptions():
    declared = (Option("tol", float, 0.5, "tolerance"), Option("n", int, 1, "count", minimum=1),
                Option("mode", str, "a", "mode", ("a", "b")))
    assert resolve("x", declared, {"tol": "1e-3"}) == {"tol": 1e-3, "n": 1, "mode": "a"}
    with pytest.raises(UsageError, match="not a number"):
        resolve("x", declared, {"tol": "small"})
    assert [o.describe_values() for o in declared] == ["float", "integer >= 1", "a|b"]
    assert Option("f", bool, True, "").format(True) == "on"
