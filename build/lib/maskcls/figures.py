"""Matplotlib figures of a model's predictions, shared by training (TensorBoard, the run folder)
and the HTML report: learning curves, the confusion matrix, F1 per class and per attribute, and
true age against the age estimate."""

from __future__ import annotations

import numpy as np

from maskcls.labels import HEAD_SIZES, HEAD_VALUE_NAMES, NUM_CLASSES, class_name, decode_classes
from maskcls.metrics import confusion, f1_per_class


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def learning_curves_figure(curves: dict[str, list[dict]]):
    plt = pyplot()
    figure, (loss_axis, f1_axis) = plt.subplots(1, 2, figsize=(11, 3.8))
    for index, (name, rows) in enumerate(curves.items()):
        if not rows:
            continue
        colour = f"C{index % 10}"
        epochs = [int(row["epoch"]) for row in rows]
        for axis, metric in ((loss_axis, "loss"), (f1_axis, "f1")):
            axis.plot(
                epochs, [float(row[f"train_{metric}"]) for row in rows], "--", color=colour, label=f"{name} train"
            )
            axis.plot(
                epochs, [float(row[f"valid_{metric}"]) for row in rows], "-o", color=colour, label=f"{name} valid"
            )
    loss_axis.set(title="loss", xlabel="epoch")
    f1_axis.set(title="macro F1", xlabel="epoch")
    f1_axis.legend(fontsize=7, loc="lower right")
    figure.tight_layout()
    return figure


def confusion_figure(truth: np.ndarray, predicted: np.ndarray, title: str):
    """18x18 heat map, counts written in the cells, classes named on the axes."""
    plt = pyplot()
    matrix = confusion(truth, predicted)
    figure, axis = plt.subplots(figsize=(9, 8))
    image = axis.imshow(matrix, cmap="Blues")
    labels = [f"{k} {class_name(k)}" for k in range(NUM_CLASSES)]
    axis.set_xticks(range(NUM_CLASSES), labels, rotation=90, fontsize=7)
    axis.set_yticks(range(NUM_CLASSES), labels, fontsize=7)
    axis.set(xlabel="predicted class", ylabel="true class", title=title)
    threshold = matrix.max() / 2 if matrix.size else 0
    for (row, column), count in np.ndenumerate(matrix):
        if count:
            colour = "white" if count > threshold else "black"
            axis.text(column, row, str(count), ha="center", va="center", fontsize=6, color=colour)
    figure.colorbar(image, fraction=0.04)
    figure.tight_layout()
    return figure


def class_f1_figure(truth: np.ndarray, predicted: np.ndarray):
    plt = pyplot()
    scores = f1_per_class(confusion(truth, predicted))
    figure, axis = plt.subplots(figsize=(9, 5))
    axis.barh(range(NUM_CLASSES), scores, color=[f"C{k // 6}" for k in range(NUM_CLASSES)])
    axis.set_yticks(range(NUM_CLASSES), [f"{k} {class_name(k)}" for k in range(NUM_CLASSES)], fontsize=8)
    axis.invert_yaxis()
    axis.set(xlim=(0, 1), xlabel="F1", title=f"F1 per class (macro F1 {scores.mean():.4f})")
    for k, score in enumerate(scores):
        axis.text(min(score + 0.01, 0.93), k, f"{score:.2f}", va="center", fontsize=7)
    figure.tight_layout()
    return figure


def attribute_f1_figure(truth: np.ndarray, predicted: np.ndarray):
    """One panel per attribute (mask, gender, age): F1 of each of its values, macro F1 in the title."""
    plt = pyplot()
    figure, axes = plt.subplots(1, 3, figsize=(11, 3.2))
    parts = zip(HEAD_SIZES.items(), decode_classes(truth), decode_classes(predicted), axes, strict=True)
    for (name, size), part_truth, part_predicted, axis in parts:
        scores = f1_per_class(confusion(part_truth, part_predicted, size))
        axis.bar(HEAD_VALUE_NAMES[name], scores, color="C0")
        axis.set(ylim=(0, 1), title=f"{name}: macro F1 {scores.mean():.4f}")
        for index, score in enumerate(scores):
            axis.text(index, score + 0.02, f"{score:.2f}", ha="center", fontsize=8)
    figure.tight_layout()
    return figure


def age_scatter_figure(ages: np.ndarray, estimates: np.ndarray, borders=(30, 60)):
    """True age (x) against the estimate (y), the diagonal, and the age borders on both axes."""
    plt = pyplot()
    figure, axis = plt.subplots(figsize=(6, 5))
    jitter = np.random.default_rng(0).uniform(-0.3, 0.3, len(ages))  # integer ages would stack
    axis.scatter(np.asarray(ages) + jitter, estimates, s=4, alpha=0.35)
    low, high = min(np.min(ages), np.min(estimates)) - 2, max(np.max(ages), np.max(estimates)) + 2
    axis.plot([low, high], [low, high], color="black", linewidth=0.8)
    for border in borders:
        axis.axvline(border - 0.5, color="grey", linestyle=":", linewidth=0.8)
        axis.axhline(border - 0.5, color="grey", linestyle=":", linewidth=0.8)
    mae = float(np.abs(np.asarray(estimates) - np.asarray(ages)).mean())
    axis.set(xlabel="true age", ylabel="estimated age", title=f"age estimate (MAE {mae:.2f} years)")
    figure.tight_layout()
    return figure
