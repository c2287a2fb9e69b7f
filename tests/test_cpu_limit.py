"""The fast tier's guard (tests/conftest.py): a test not marked slow whose body takes more CPU time
than the limit fails, naming the limit; a marked one, a cheap one and a costly fixture under its
own limit pass."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

CONFTEST = Path(__file__).with_name("conftest.py")

COSTLY = '''
import time

import pytest


def spin(seconds):
    end = time.process_time() + seconds
    while time.process_time() < end:
        pass


@pytest.fixture
def costly_fixture():
    spin(0.1)  # over the body's limit, under the fixtures'


def test_costly():
    spin(0.15)


@pytest.mark.slow
def test_costly_but_marked():
    spin(0.15)


def test_cheap(costly_fixture):
    pass
'''


def test_an_unmarked_test_over_the_cpu_limit_fails(pytester):
    pytester.makeconftest(CONFTEST.read_text())
    pytester.makeini("[pytest]\nmarkers =\n    slow: costly\n")
    pytester.makepyfile(test_costly=COSTLY)
    with pytest.MonkeyPatch.context() as mp:  # the inner run's limit only, not this test's
        mp.setenv("ODNBENCH_TEST_CPU_LIMIT", "0.09")  # fixtures then get 0.09 * 5 / 3 = 0.15
        result = pytester.runpytest_inprocess("-p", "no:randomly", "-p", "no:cacheprovider", "-m", "not slow")
    result.assert_outcomes(passed=1, failed=1, deselected=1)
    result.stdout.fnmatch_lines(["*test_costly.py::test_costly: its call took * CPU seconds, more than the 0.09 "
                                 "allowed a test not marked slow*"])
    result.stdout.fnmatch_lines(["*CPU time of tests not marked slow*"])


def test_a_full_run_lists_a_costly_unmarked_test_instead_of_failing_it(pytester):
    """Without ``-m "not slow"`` (CI's full run) the same test passes and the summary names it."""
    pytester.makeconftest(CONFTEST.read_text())
    pytester.makeini("[pytest]\nmarkers =\n    slow: costly\n")
    pytester.makepyfile(test_costly=COSTLY)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ODNBENCH_TEST_CPU_LIMIT", "0.09")
        result = pytester.runpytest_inprocess("-p", "no:randomly", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines(["*over the limit, to mark @pytest.mark.slow*", "*test_costly.py::test_costly call*"])
