"""Known answers for the disentanglement metrics (fast settings, toy factors observed directly)."""

import numpy as np
import pytest
import sklearn

from ppl_vae.evaluation import disentanglement_metrics as D
from ppl_vae.data.dsprites import GroundTruthData


class Toy(GroundTruthData):
    """Three independent factors; the observation is the factor vector itself."""

    factor_sizes = (4, 5, 6)
    factor_names = ("a", "b", "c")

    def sample_observations_from_factors(self, factors, rng):
        return factors.astype(float)


GT = Toy()
IDENTITY = lambda x: x  # noqa: E731
CONSTANT = lambda x: np.zeros((len(x), 3))  # noqa: E731
DUPLICATED = lambda x: np.concatenate([x[:, :1], x[:, :1], x[:, 1:2]], 1)  # noqa: E731  factor c not coded


@pytest.fixture(scope="module")
def truth():
    return D.all_metrics(GT, IDENTITY, fast=True)


def test_ground_truth_as_representation_scores_about_one(truth):
    assert truth["beta_vae"]["eval_accuracy"] > 0.95
    assert truth["factor_vae"]["eval_accuracy"] > 0.95
    assert truth["mig"]["mig"] > 0.95
    for k in ("disentanglement", "completeness", "informativeness_test"):
        assert truth["dci"][k] > 0.95
    assert truth["modularity_explicitness"]["modularity"] > 0.95
    assert truth["modularity_explicitness"]["explicitness"] > 0.95
    assert D.sap(GT, IDENTITY, np.random.default_rng(0), continuous_factors=True, **D.FAST["sap"])["sap"] > 0.95
    # the discrete form (LinearSVC on one code) cannot separate 4-6 ordered classes with one line: about 0.5
    assert 0.35 < truth["sap"]["sap"] < 0.75


def test_results_record_settings_and_sklearn_version(truth):
    assert truth["mig"]["settings"] == {"num_train": 2000, "num_bins": 20}
    assert all(r["sklearn"] == sklearn.__version__ for r in truth.values())


def test_constant_representation_scores_about_zero():
    r = D.all_metrics(GT, CONSTANT, fast=True)
    assert r["mig"]["mig"] == 0 and r["sap"]["sap"] == 0 and r["factor_vae"]["eval_accuracy"] == 0
    assert r["dci"]["disentanglement"] == 0 and r["dci"]["completeness"] == 0
    assert r["modularity_explicitness"]["explicitness"] == pytest.approx(0.5)  # chance AUC
    assert r["beta_vae"]["eval_accuracy"] < 0.5  # majority class only


def test_duplicated_codes_give_low_mig_and_sap():
    rng = lambda: np.random.default_rng(0)  # noqa: E731
    m = D.mig(GT, DUPLICATED, rng(), **D.FAST["mig"])
    assert m["mig_per_factor"][0] < 0.02  # two codes carry factor a equally: no gap
    assert m["mig_per_factor"][1] > 0.95
    for continuous in (False, True):
        s = D.sap(GT, DUPLICATED, rng(), continuous_factors=continuous, **D.FAST["sap"])
        assert s["sap"] < 0.4


@pytest.mark.parametrize(
    "importance,d,c",
    [
        (np.eye(3), 1.0, 1.0),  # one code per factor
        (np.ones((3, 3)), 0.0, 0.0),  # every code uses every factor
        (np.array([[1.0, 1.0], [0.0, 0.0]]), 0.0, 1.0),  # one code for both factors
        (np.array([[1.0, 0.0], [1.0, 0.0]]), 1.0, 0.0),  # two codes for one factor
    ],
)
def test_dci_closed_forms(importance, d, c):
    out = D.dci_from_importance(importance)
    assert out["disentanglement"] == pytest.approx(d, abs=1e-9)
    assert out["completeness"] == pytest.approx(c, abs=1e-9)


def test_dci_mixed_matrix_by_hand():
    r = np.array([[3.0, 1.0], [0.0, 2.0]])
    h = lambda p: -(p[p > 0] * np.log(p[p > 0])).sum() / np.log(2)  # noqa: E731
    d = (1 - h(np.array([0.75, 0.25]))) * 4 / 6 + 1 * 2 / 6
    c = 1 * 3 / 6 + (1 - h(np.array([1 / 3, 2 / 3]))) * 3 / 6
    out = D.dci_from_importance(r)
    assert out["disentanglement"] == pytest.approx(d) and out["completeness"] == pytest.approx(c)


def test_modularity_closed_forms():
    assert D.modularity_from_mi(np.eye(3)) == pytest.approx(1.0)
    assert D.modularity_from_mi(np.ones((2, 3))) == pytest.approx(0.0)
    # one code: MI (1, 0.5, 0): deviation 0.25 / (1 * 2) -> 0.875
    assert D.modularity_from_mi(np.array([[1.0, 0.5, 0.0]])) == pytest.approx(0.875)
