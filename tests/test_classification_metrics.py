import numpy as np
import pytest
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, recall_score

from zfutils.metrics import classification_metrics, confusion

# Four classes; class 3 occurs once and is never predicted.
Y_TRUE = [0, 0, 0, 1, 1, 2, 2, 3]
Y_PRED = [0, 0, 1, 1, 1, 2, 0, 2]


def test_hand_computed_tiny_case():
    m = classification_metrics(Y_TRUE, Y_PRED, 4)
    # 5 of 8 right.
    assert m["accuracy"] == pytest.approx(5 / 8)
    # Recall per class: 2/3, 2/2, 1/2, 0/1.
    assert m["macro_recall"] == pytest.approx((2 / 3 + 1 + 1 / 2 + 0) / 4)
    # Precision 2/3, 2/3, 1/2, 0 (nothing predicted, zero_division=0); F1 2/3, 4/5, 1/2, 0.
    assert m["macro_f1"] == pytest.approx((2 / 3 + 4 / 5 + 1 / 2 + 0) / 4)
    assert confusion(Y_TRUE, Y_PRED, 4).tolist() == [[2, 1, 0, 0], [0, 2, 0, 0], [1, 0, 1, 0], [0, 0, 1, 0]]


def test_a_class_absent_from_both_arrays_still_counts():
    # Class 4 of the head never occurs: it adds a zero to the macro averages (sklearn's default
    # labels, the classes seen, would leave it out and give 13/24).
    m = classification_metrics(Y_TRUE, Y_PRED, 5)
    assert m["macro_recall"] == pytest.approx((2 / 3 + 1 + 1 / 2) / 5)
    assert confusion(Y_TRUE, Y_PRED, 5).shape == (5, 5)


def test_equal_to_scikit_learn_on_fixed_arrays():
    rng = np.random.default_rng(3)
    y_true = rng.integers(0, 6, 200)
    y_pred = np.where(rng.random(200) < 0.6, y_true, rng.integers(0, 6, 200))
    y_pred[y_pred == 5] = 4  # class 5 is never predicted
    labels = list(range(7))  # and class 6 never occurs at all
    m = classification_metrics(y_true, y_pred, 7)
    assert m["accuracy"] == accuracy_score(y_true, y_pred)
    assert m["macro_recall"] == recall_score(y_true, y_pred, labels=labels, average="macro", zero_division=0)
    assert m["macro_f1"] == f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0)
    assert (confusion(y_true, y_pred, 7) == confusion_matrix(y_true, y_pred, labels=labels)).all()


def test_rejects_labels_outside_the_head():
    with pytest.raises(ValueError, match="outside 0..2"):
        classification_metrics([0, 1, 3], [0, 1, 2], 3)
    with pytest.raises(ValueError, match="3 labels but y_pred has 2"):
        confusion([0, 1, 2], [0, 1], 3)
