import pytest
from click.testing import CliRunner

from pipeline.cli import cli
from pipeline.shapes import parse_shapes


@pytest.mark.parametrize("text,shapes", [("1x1", [(1, 1)]), ("1x50, 64X200", [(1, 50), (64, 200)])])
def test_parse_shapes(text, shapes):
    assert parse_shapes(text) == shapes


@pytest.mark.parametrize("bad", ["", "1", "1x", "x2", "0x5", "1x-1", "2x3x4", "ax1", "1x1,"])
def test_bad_shapes_are_usage_errors(bad):
    result = CliRunner().invoke(cli, ["bench", "--shapes", bad])
    assert result.exit_code == 2 and "--shapes" in result.output
