"""Frozen-feature evaluation: few-shot kNN over fixed label draws, and a linear probe.

The kNN reading (:func:`knn_accuracy`) is 1-nearest-neighbour classification of held-out rows
against a *bank* of ``shots`` labelled rows per class, by cosine similarity of centred features,
averaged over ``draws`` banks. Why few shots: with every training row in the bank the digits
saturate (raw-pixel kNN 97.8% with k = 5 over the full bank), leaving no room to tell two encoders
apart; with 5 labelled rows per class raw pixels reach 84%, a random-initialised encoder 27%,
so an encoder has room above both floors and a difference between arms shows. One bank draw is
noisy (±2-3 pp), so the score is the mean over ``draws`` banks. The banks are drawn from a fixed
*labelled pool* of ``pool`` training rows per class and depend only on the split seed: every
arm and every seed is scored against the same banks and the same held-out rows, so the paired
differences between arms carry no label-draw noise.

Why centred cosine: mean-pooled transformer features share a large common component that
dominates raw cosine similarity; subtracting the pool's mean feature removes it, and L2
normalisation makes the score scale-free. Per-dimension standardisation (the pipeline's default
normalisation) is not used here because it amplifies near-constant dimensions, such as the
digits' border pixels (raw-pixel 5-shot kNN: 82% standardised vs 86% centred).

The linear probe (:func:`linear_probe_accuracy`) is MAE's: features standardised with the
training rows' statistics (MAE puts a BatchNorm without affine before the linear head), then a
multinomial logistic regression (scikit-learn, L-BFGS, ``C = 1``) fitted on every training row's
label, scored on the held-out rows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cl_core.validation import check_int

_POOL_STREAM = 0x706F6F6C  # SeedSequence spawn keys: the labelled pool ...
_BANK_STREAM = 0x62616E6B  # ... and the bank draws, independent of the split's own stream


@dataclass(frozen=True)
class KNNBanks:
    """The labelled rows the kNN reading uses.

    Attributes
    ----------
    pool : ndarray of int, shape (n_classes * pool_per_class,)
        Training rows whose labels the evaluation may use, sorted.
    banks : ndarray of int, shape (draws, n_classes * shots)
        Each row one bank: ``shots`` rows of every class, drawn from ``pool``.
    """

    pool: np.ndarray
    banks: np.ndarray


def draw_banks(
    labels: np.ndarray,
    train_rows: np.ndarray,
    *,
    shots: int,
    draws: int,
    pool_per_class: int,
    seed: int,
) -> KNNBanks:
    """A fixed labelled pool and ``draws`` few-shot banks from it (seeded).

    Parameters
    ----------
    labels : ndarray of int, shape (N,)
    train_rows : ndarray of int
        Rows the pool is drawn from (never the held-out rows).
    shots : int >= 1
        Labelled rows per class in each bank.
    draws : int >= 1
    pool_per_class : int >= shots
        Labelled rows per class in the pool (fewer when a class has fewer training rows).
    seed : int
        The split seed: the pool and the banks depend on it only.
    """
    shots = check_int("knn_shots", shots, 1, "; e.g. 5")
    draws = check_int("knn_draws", draws, 1, "; e.g. 50")
    pool_per_class = check_int("knn_pool", pool_per_class, shots, f"; at least shots ({shots})")
    labels = np.asarray(labels)
    train_rows = np.asarray(train_rows, dtype=np.int64)
    pool_rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, _POOL_STREAM])))
    bank_rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, _BANK_STREAM])))
    members = []
    for label in np.unique(labels[train_rows]):
        rows = train_rows[labels[train_rows] == label]
        if rows.size < shots:
            raise ValueError(
                f"class {int(label)} has {rows.size} training rows, fewer than knn_shots={shots}; "
                f"lower knn_shots or hold out fewer rows"
            )
        members.append(np.sort(pool_rng.permutation(rows)[:pool_per_class]))
    banks = np.stack(
        [np.concatenate([bank_rng.permutation(m)[:shots] for m in members]) for _ in range(draws)]
    )
    return KNNBanks(pool=np.sort(np.concatenate(members)), banks=banks)


def _centred_unit(features: np.ndarray, centre: np.ndarray) -> np.ndarray:
    centred = features - centre
    norms = np.linalg.norm(centred, axis=1, keepdims=True)
    return centred / np.maximum(norms, 1e-12)


def knn_accuracy(
    features: np.ndarray,
    labels: np.ndarray,
    banks: np.ndarray,
    query_rows: np.ndarray,
    *,
    centre_rows: np.ndarray | None = None,
) -> float:
    """Mean over banks of the 1-NN accuracy of the query rows (cosine of centred features).

    Parameters
    ----------
    features : ndarray, shape (N, D)
        One feature row per dataset row (rows not used may hold anything finite).
    labels : ndarray of int, shape (N,)
    banks : ndarray of int, shape (draws, bank_size)
        Labelled rows of each bank (:attr:`KNNBanks.banks`).
    query_rows : ndarray of int, shape (Q,)
        Rows to classify (the held-out split); never in a bank.
    centre_rows : ndarray of int, optional
        Rows whose mean feature is subtracted before normalising (default: every bank row).

    Returns
    -------
    float
        ``mean_b (1/Q) sum_q [label(nearest bank-b row to q) == label(q)]``; ties go to the
        bank row listed first.
    """
    features = np.asarray(features, dtype=np.float64)
    labels = np.asarray(labels)
    banks = np.atleast_2d(np.asarray(banks, dtype=np.int64))
    query_rows = np.asarray(query_rows, dtype=np.int64)
    if np.intersect1d(banks.reshape(-1), query_rows).size:
        raise ValueError("a query row is also in a bank; draw the banks from the training rows")
    from threadpoolctl import threadpool_limits

    centre_from = np.unique(banks) if centre_rows is None else np.asarray(centre_rows)
    centre = features[centre_from].mean(axis=0)
    queries = _centred_unit(features[query_rows], centre)
    truth = labels[query_rows]
    members, positions = np.unique(banks, return_inverse=True)  # every bank row once
    positions = positions.reshape(banks.shape)
    # one (Q, members) product instead of one per bank; one BLAS thread (small products)
    with threadpool_limits(limits=1):
        similarity = queries @ _centred_unit(features[members], centre).T
    scores = []
    for bank, columns in zip(banks, positions, strict=True):
        predicted = labels[bank][np.argmax(similarity[:, columns], axis=1)]
        scores.append(float(np.mean(predicted == truth)))
    return float(np.mean(scores))


def linear_probe_accuracy(
    features: np.ndarray, labels: np.ndarray, train_rows: np.ndarray, held_rows: np.ndarray
) -> float:
    """Held-out accuracy of a logistic-regression probe on standardised frozen features.

    Parameters
    ----------
    features : ndarray, shape (N, D)
    labels : ndarray of int, shape (N,)
    train_rows, held_rows : ndarray of int
        The probe is fitted on ``train_rows`` (statistics included) and scored on ``held_rows``.
    """
    from sklearn.linear_model import LogisticRegression
    from threadpoolctl import threadpool_limits

    features = np.asarray(features, dtype=np.float64)
    train = features[train_rows]
    mean, std = train.mean(axis=0), train.std(axis=0)
    std[std < 1e-12] = 1.0  # a constant feature carries nothing; leave it at zero
    classifier = LogisticRegression(C=1.0, max_iter=2000)
    # One BLAS thread: L-BFGS on a few thousand rows is many small products, which a thread
    # pool only slows down (measured 60x on a busy 2-core machine).
    with threadpool_limits(limits=1):
        classifier.fit((train - mean) / std, labels[train_rows])
        predicted = classifier.predict((features[held_rows] - mean) / std)
    return float(np.mean(predicted == labels[held_rows]))
