"""The never-circular contrasts (leave-pair-out, a seeded random control), the pair contrast
("A rather than B"), the one contrast grammar, and classifier neighbours in O(K·k) memory."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from case_saliency import CASE
from case_saliency.core.contrast import (ClassifierNeighbours, ConfusionNeighbours, ExplicitContrast, LeavePairOut,
                                        RandomContrast, Versus, build_contrast, contrast_spec, nearest_rows)


def test_nearest_rows_equal_a_full_stable_argsort_with_ties_and_small_blocks():
    generator = torch.Generator().manual_seed(0)
    weight = torch.randn(300, 16, generator=generator)
    weight[7] = weight[3]  # exact ties: both rows are each other's nearest and tie against any third row
    weight[11] = weight[3]
    unit = weight.double() / weight.double().norm(dim=1, keepdim=True)
    cosine = unit @ unit.T
    cosine.fill_diagonal_(-2.0)
    for k in (1, 3):
        expected = cosine.argsort(dim=1, descending=True, stable=True)[:, :k]
        assert torch.equal(nearest_rows(weight, k, block_entries=1000), expected)  # 3 rows per block
        assert torch.equal(nearest_rows(weight, k), expected)
    assert nearest_rows(weight, 2)[3].tolist() == [7, 11]  # ties to the lower index


def test_leave_pair_out_never_holds_the_other_compared_class():
    weight = torch.randn(40, 8, generator=torch.Generator().manual_seed(1))
    plain = ClassifierNeighbours(weight, k=2)
    strategy = LeavePairOut(plain)
    nearest = plain.neighbours[:, 0]
    pairs = torch.stack([torch.arange(40), nearest], dim=1)  # each class with its own nearest neighbour
    got = strategy(torch.zeros(40, 40), pairs)
    assert got.shape == (40, 2, 2)
    assert not (got[:, 0] == pairs[:, 1:2]).any() and not (got[:, 1] == pairs[:, 0:1]).any()
    # Where the partner is not a neighbour the contrast is the plain one; where it is, the next one.
    ranked = ClassifierNeighbours(weight, k=3).neighbours
    for row in range(40):
        for slot in range(2):
            cls, other = int(pairs[row, slot]), int(pairs[row, 1 - slot])
            expected = [c for c in ranked[cls].tolist() if c != other][:2]
            assert got[row, slot].tolist() == expected
    assert strategy.spec == "leave-pair-out:classifier:2"
    three = LeavePairOut(ClassifierNeighbours(weight, k=1))(torch.zeros(1, 40), torch.tensor([[0, 1, 2]]))
    assert not np.isin(three.numpy(), [0, 1, 2]).any()  # more targets per image: all of them left out


def test_leave_pair_out_over_confusion_neighbours():
    counts = np.array([[10, 5, 1, 0], [6, 10, 0, 2], [0, 1, 10, 3], [0, 0, 4, 10]], dtype=float)
    strategy = build_contrast("leave-pair-out:confusion:1", confusion=counts)
    assert isinstance(strategy, LeavePairOut) and strategy.kind == "confusion"
    # 0's neighbour is 1 and 1's is 0: in the pair (0, 1) both move to their second neighbour.
    assert strategy(torch.zeros(1, 4), torch.tensor([[0, 1]])).tolist() == [[[2], [3]]]
    assert strategy(torch.zeros(1, 4), torch.tensor([[2, 0]])).tolist() == [[[3], [1]]]
    assert build_contrast("leave-pair-out", confusion=counts).spec == "leave-pair-out:confusion:1"
    assert build_contrast("leave-pair-out", model=torch.nn.Linear(3, 4)).spec == "leave-pair-out:classifier:1"


def test_random_contrast_is_seeded_per_class_and_excludes_the_compared_classes():
    strategy = RandomContrast(k=2, seed=3)
    targets = torch.tensor([[1, 2], [1, 5], [2, 1]])
    got = strategy(torch.zeros(3, 10), targets)
    assert got.shape == (3, 2, 2)
    assert not (got == targets[:, None, None, 0:1].squeeze(-1)[..., None]).all()
    for row in range(3):
        assert not np.isin(got[row].numpy(), targets[row].numpy()).any()
        assert len(set(got[row, 0].tolist())) == 2
    again = RandomContrast(k=2, seed=3)(torch.zeros(1, 10), torch.tensor([[1, 2]]))
    assert torch.equal(again[0], got[0])  # the same class gets the same draw in any batch
    other_seed = [RandomContrast(k=2, seed=s)(torch.zeros(1, 10), torch.tensor([[1, 2]])).tolist() for s in range(6)]
    assert len({str(v) for v in other_seed}) > 1
    assert build_contrast("random").spec == "random:1:0" and build_contrast("random:2:7").spec == "random:2:7"
    assert contrast_spec("random") == "random:1:0"


def test_versus_contrasts_each_target_with_the_other(lite0, photos):
    with torch.no_grad():
        top = lite0(photos).topk(2, dim=1).indices
    pair = [[int(top[0, 0]), int(top[0, 1])]]
    cam = CASE(lite0, target_layer="bn2", contrast="versus")
    result = cam.explain(photos[:1], pair)
    assert result.contrast.tolist() == [[[pair[0][1]], [pair[0][0]]]]
    # A's map is CASE's with B as an explicit contrast, and B's with A.
    a, b = pair[0]
    for slot, (target, other) in enumerate([(a, b), (b, a)]):
        alone = CASE(lite0, target_layer="bn2", contrast=ExplicitContrast([other])).explain(photos[:1], target)
        assert torch.allclose(result.maps[0, slot], alone.maps[0], atol=1e-5)
    with pytest.raises(ValueError, match="two or more per image"):
        cam.explain(photos[:1], "top1")
    assert Versus().spec == "versus" and Versus.circular


def test_one_grammar_and_its_errors(lite0):
    for spec, kind in [("leave-pair-out", LeavePairOut), ("leave-pair-out:classifier:2", LeavePairOut),
                       ("leave-pair-out:nearest:3", LeavePairOut), ("leave-pair-out:top:1", LeavePairOut),
                       ("random:1:4", RandomContrast), ("versus", Versus), ("classifier:2", ClassifierNeighbours)]:
        strategy = build_contrast(spec, model=lite0)
        assert isinstance(strategy, kind)
        assert build_contrast(strategy.spec, model=lite0).spec == strategy.spec  # spec text round trip
    for bad, match in [("leave-pair-out:rank:1", "leave-pair-out\\[:classifier"), ("random:x", "random:K:SEED"),
                       ("versus:2", "takes no number"), ("leave-pair-out:confusion", "needs a confusion matrix")]:
        with pytest.raises(ValueError, match=match):
            build_contrast(bad, model=lite0)
    with pytest.raises(TypeError, match="not the file"):
        ConfusionNeighbours("m.json")


def test_run_method_specs_take_the_new_contrasts(lite0, photos):
    from case_saliency.methods.spec import build_method

    case = build_method("case(contrast=leave-pair-out:classifier:1)", lite0, target_layer="bn2")
    assert isinstance(case.contrast, LeavePairOut)
    result = case.explain(photos, "topk:2")
    contrast, targets = result.contrast, result.targets
    assert not (contrast[:, 0] == targets[:, 1:2]).any() and not (contrast[:, 1] == targets[:, 0:1]).any()


def test_diagnose_records_the_contrast_each_row_used(cnn, fashion, tmp_path):
    """Leave-pair-out (the diagnostic's default) is never circular and versus always is; each row's
    ``other_in_contrast`` says what its contrast classes really held."""
    from runs_support import LAYER, TRANSFORM

    from case_saliency.runs import run_diagnose
    from case_saliency.runs.summary import load_results

    methods = ["case", "case(contrast=versus)", "case(contrast=random:1:0)", "case(contrast=classifier:1)", "finercam",
               "finercam(contrast=nearest:1)"]
    run = run_diagnose(cnn, fashion, tmp_path / "run", methods=methods, n=8, seed=3, layer=LAYER,
                       transform=TRANSFORM, batch_size=4, gallery=0, progress=False)
    config, frame = load_results(run)
    assert config["contrast"] == "leave-pair-out:classifier:1"
    assert config["method_contrasts"]["case(contrast=versus)"] == "versus"
    # Finer-CAM keeps its nearest logits, without the other compared class, unless its spec sets a contrast
    assert config["method_contrasts"]["finercam"] == "leave-pair-out:nearest:3"
    assert config["method_contrasts"]["finercam(contrast=nearest:1)"] == "nearest:1"
    for method, frame_of in frame.groupby("method"):
        contrast1 = frame_of["contrast1"].str.split().map(lambda v: [int(c) for c in v])
        contrast2 = frame_of["contrast2"].str.split().map(lambda v: [int(c) for c in v])
        inside = [b in c1 or a in c2 for a, b, c1, c2 in zip(frame_of["class1"], frame_of["class2"], contrast1,
                                                                  contrast2, strict=True)]
        assert (frame_of["other_in_contrast"] == inside).all(), method
    rows = {m: frame[frame["method"] == m] for m in methods}
    assert not rows["case"]["other_in_contrast"].any() and not rows["finercam"]["other_in_contrast"].any()
    assert rows["finercam(contrast=nearest:1)"]["other_in_contrast"].mean() > 0.5  # nearest logit: mostly the other
    assert not rows["case(contrast=random:1:0)"]["other_in_contrast"].any()
    versus = rows["case(contrast=versus)"]
    assert versus["other_in_contrast"].all() and (versus["contrast1"].astype(int) == versus["class2"]).all()


def test_leave_pair_out_over_image_level_rankings():
    logits = torch.tensor([[0.0, 5.0, 3.0, 4.9, -1.0, 4.0]])
    targets = torch.tensor([[1, 3]])  # the top-1 and top-2 classes
    top = build_contrast("leave-pair-out:top:1")
    assert top(logits, targets).tolist() == [[[5], [5]]]  # plain top:1 would give each the other: [[3], [1]]
    nearest = build_contrast("leave-pair-out:nearest:2")
    # nearest to 5.0 other than 1 and 3: 4.0 (class 5), 3.0 (class 2); to 4.9: 4.0, 3.0
    assert nearest(logits, targets).tolist() == [[[5, 2], [5, 2]]]
