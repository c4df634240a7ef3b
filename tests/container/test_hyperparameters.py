import re

import pytest

from container.hyperparameters import SCHEMA, VALID, Hyperparameters, markdown_table, type_name
from ncf.errors import ConfigError


def parse(**raw):
    return Hyperparameters.parse(raw)


def test_defaults_apply_when_nothing_is_given_and_the_model_is_neumf():
    hp = parse()
    assert hp.train.model == "neumf" and hp.test_k == 1 and hp.threshold == 0.5 and hp.min_rating is None


def test_values_quoted_by_the_v2_sdk_are_decoded():
    hp = parse(model='"mf"', epochs='"7"', mlp_layers='"[16, 8]"', user_column='"customer"')
    assert hp.train.model == "mf" and hp.train.epochs == 7 and hp.train.mlp_layers == (16, 8)
    assert hp.columns.user == "customer"


def test_values_sent_by_the_v3_sdk_are_decoded():
    hp = parse(pretrain="false", mlp_layers="[64, 32]", learning_rate="0.01", model="gmf")
    assert hp.train.pretrain == "none" and hp.train.mlp_layers == (64, 32) and hp.train.learning_rate == 0.01


def test_raw_console_strings_are_accepted():
    hp = parse(model="mlp", mlp_layers="64,32,16", dropout="0.1", epochs="3.0")
    assert hp.train.mlp_layers == (64, 32, 16) and hp.train.dropout == 0.1 and hp.train.epochs == 3


@pytest.mark.parametrize("text", ["False", "false", "FALSE", "0", '"False"', "no", "n"])
def test_a_quoted_or_capitalised_false_is_false(text):
    assert parse(pretrain=text).train.pretrain == "none"


@pytest.mark.parametrize("text", ["True", "true", "1", '"true"', "yes", "Y"])
def test_true_in_any_spelling_is_true_and_means_the_papers_pretraining(text):
    assert parse(model="neumf", pretrain=text).train.pretrain == "towers"


@pytest.mark.parametrize("text", ["mf", '"MF"', " mf "])
def test_pretrain_from_mf_is_named_in_any_case(text):
    assert parse(pretrain=text).train.pretrain == "mf"


def test_none_means_unset_for_optional_values():
    assert parse(min_rating="none").min_rating is None and parse(min_rating="3.5").min_rating == 3.5


def test_platform_and_tuning_keys_are_ignored():
    assert parse(sagemaker_program="x", sagemaker_region='"us-east-1"', _tuning_objective_metric="test:hr@10",
                 epochs="3") == parse(epochs="3")


@pytest.mark.parametrize("raw, message", [
    ({"epocs": "3"}, r"unknown hyperparameter 'epocs'; known: .*epochs"),
    ({"epochs": "three"}, r"hyperparameter 'epochs' = 'three': expected an integer \(maximum epochs\)"),
    ({"pretrain": "maybe"}, r"pretrain must be one of \['auto', 'none', 'towers', 'mf'\] \(true = towers, false = none\), got 'maybe'"),
    ({"learning_rate": "nan"}, r"'learning_rate' = 'nan': expected a finite number"),
    ({"mlp_layers": "[64, x]"}, r"'mlp_layers' = '\[64, x\]': expected a list of integers"),
    ({"model": "bpr"}, r"hyperparameter model must be one of"),
    ({"threshold": "1.5"}, r"'threshold' must be in \[0, 1\]"),
    ({"test_k": "0"}, r"'test_k' must be >= 1"),
    ({"epochs": "true"}, r"expected an integer, not a boolean"),
])
def test_bad_values_fail_naming_key_value_and_what_is_allowed(raw, message):
    with pytest.raises(ConfigError, match=message):
        Hyperparameters.parse(raw)


def test_the_table_lists_every_key_of_the_schema_with_its_default():
    from container.hyperparameters import markdown_table

    table = markdown_table()
    assert table.count("\n| `") == len(SCHEMA)
    assert "| `factors` | integer | >= 1 | 64 |" in table and "| `model` | text | neumf, mf, gmf, mlp | neumf |" in table


def test_used_values_round_trip_through_to_dict():
    hp = parse(model="mf", mlp_layers="8,4", user_column="u")
    assert Hyperparameters.parse({k: str(v) if not isinstance(v, list) else str(v)
                                  for k, v in hp.to_dict().items() if v is not None}) == hp


@pytest.mark.parametrize("raw, expected", [('"auto"', "auto"), ("Auto", "auto"), ("512", 512), ('"1024"', 1024)])
def test_batch_size_is_auto_or_an_integer_however_the_client_quoted_it(raw, expected):
    assert Hyperparameters.parse({"batch_size": raw}).train.batch_size == expected


def test_a_batch_size_that_is_no_number_names_what_is_allowed():
    with pytest.raises(ConfigError, match="'batch_size' = 'lots': expected auto or an integer"):
        Hyperparameters.parse({"batch_size": "lots"})


def test_the_test_samples_are_positive_counts_or_none():
    parsed = Hyperparameters.parse({"test_users": "100", "full_ranking_users": "none"})
    assert parsed.test_users == 100 and parsed.full_ranking_users is None
    with pytest.raises(ConfigError, match="'test_users' must be >= 1"):
        Hyperparameters.parse({"test_users": "0"})


def _accepted(name, value) -> bool:
    try:
        Hyperparameters.parse({name: value})
    except ConfigError:
        return False
    return True


@pytest.mark.parametrize("name", sorted(VALID))
def test_the_tables_valid_values_are_what_parsing_accepts(name):
    """Each interval's bounds hold on both sides, and each listed word is accepted while another is refused."""
    valid = VALID[name]
    interval = re.fullmatch(r"(?:auto, or )?(>=|>) (\d+)(, or none)?|([\[(])(\d+), (\d+)([\])])", valid)
    if interval and interval.group(1):
        op, bound = interval.group(1), int(interval.group(2))
        inside, outside = (bound, bound - 1) if op == ">=" else (bound + 0.5, bound)
        assert _accepted(name, str(inside)) and not _accepted(name, str(outside)), (name, valid)
    elif interval:
        low, high = int(interval.group(5)), int(interval.group(6))
        assert _accepted(name, str(low)) == (interval.group(4) == "["), (name, valid)
        assert _accepted(name, str(high)) == (interval.group(7) == "]"), (name, valid)
        assert not _accepted(name, str(low - 1)) and not _accepted(name, str(high + 1))
        assert _accepted(name, str((low + high) / 2))
    elif re.fullmatch(r"[a-z_]+(, [a-z_]+)+", valid):
        for word in valid.split(", "):
            assert _accepted(name, word), (name, word)
        assert not _accepted(name, "bogus"), name
    if valid.endswith("or none"):
        assert _accepted(name, "none")


def test_every_hyperparameter_has_a_type_and_valid_values_in_the_table():
    assert set(VALID) == set(SCHEMA)
    for name, param in SCHEMA.items():
        assert type_name(param) in markdown_table()
