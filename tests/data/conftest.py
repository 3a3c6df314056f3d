"""Fixtures shared by the data tests."""
import pytest


@pytest.fixture(scope="session")
def crawl():
    """A 300-page synthetic crawl (seed 0) with ground truth: the integration input of the cleaning tests."""
    from minillm.data.crawl import generate_crawl

    return generate_crawl(300, seed=0)
