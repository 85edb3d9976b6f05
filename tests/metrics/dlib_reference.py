"""disentanglement_lib's own code for modularity/explicitness, IRS and the unsupervised scores, transcribed
line by line from google-research/disentanglement_lib (evaluation/metrics/modularity_explicitness.py, irs.py,
unsupervised_metrics.py, utils.py at master; gin defaults of unsupervised_study_v1) with its numpy/sklearn
calls as they are, for parity tests on the same codes. dlib's arrays are (num_codes, num_points); the
transcription keeps that layout. It is a test reference, never imported by betasweep."""

from __future__ import annotations

import numpy as np
import scipy.linalg
import sklearn.metrics
from sklearn import linear_model, preprocessing


def _histogram_discretize(target, num_bins=20):
    discretized = np.zeros_like(target)
    for i in range(target.shape[0]):
        discretized[i, :] = np.digitize(target[i, :], np.histogram(target[i, :], num_bins)[1][:-1])
    return discretized


def discrete_mutual_info(mus, ys):
    num_codes = mus.shape[0]
    num_factors = ys.shape[0]
    m = np.zeros([num_codes, num_factors])
    for i in range(num_codes):
        for j in range(num_factors):
            m[i, j] = sklearn.metrics.mutual_info_score(ys[j, :], mus[i, :])
    return m


def normalize_data(data, mean=None, stddev=None):
    if mean is None:
        mean = np.mean(data, axis=1)
    if stddev is None:
        stddev = np.std(data, axis=1)
    return (data - mean[:, np.newaxis]) / stddev[:, np.newaxis], mean, stddev


def modularity(mutual_information):
    squared_mi = np.square(mutual_information)
    max_squared_mi = np.max(squared_mi, axis=1)
    numerator = np.sum(squared_mi, axis=1) - max_squared_mi
    denominator = max_squared_mi * (squared_mi.shape[1] - 1.)
    delta = numerator / denominator
    modularity_score = 1. - delta
    index = (max_squared_mi == 0.)
    modularity_score[index] = 0.
    return np.mean(modularity_score)


def explicitness_per_factor(mus_train, y_train, mus_test, y_test):
    x_train = np.transpose(mus_train)
    x_test = np.transpose(mus_test)
    clf = linear_model.LogisticRegression().fit(x_train, y_train)
    y_pred_train = clf.predict_proba(x_train)
    y_pred_test = clf.predict_proba(x_test)
    mlb = preprocessing.MultiLabelBinarizer()
    roc_train = sklearn.metrics.roc_auc_score(mlb.fit_transform(np.expand_dims(y_train, 1)), y_pred_train)
    roc_test = sklearn.metrics.roc_auc_score(mlb.fit_transform(np.expand_dims(y_test, 1)), y_pred_test)
    return roc_train, roc_test


def modularity_explicitness(mus_train, ys_train, mus_test, ys_test):
    """dlib's compute_modularity_explicitness after its sampling: codes (d, n), factors (K, n)."""
    scores = {}
    discretized_mus = _histogram_discretize(mus_train)
    mutual_information = discrete_mutual_info(discretized_mus, ys_train)
    scores["modularity_score"] = modularity(mutual_information)
    explicitness_score_train = np.zeros([ys_train.shape[0], 1])
    explicitness_score_test = np.zeros([ys_test.shape[0], 1])
    mus_train_norm, mean_mus, stddev_mus = normalize_data(mus_train)
    mus_test_norm, _, _ = normalize_data(mus_test, mean_mus, stddev_mus)
    for i in range(ys_train.shape[0]):
        explicitness_score_train[i], explicitness_score_test[i] = explicitness_per_factor(
            mus_train_norm, ys_train[i, :], mus_test_norm, ys_test[i, :])
    scores["explicitness_score_train"] = np.mean(explicitness_score_train)
    scores["explicitness_score_test"] = np.mean(explicitness_score_test)
    return scores


def _drop_constant_dims(ys):
    ys = np.asarray(ys)
    stds = np.std(ys, axis=1)
    return ys[stds > 0., :]


def scalable_disentanglement_score(gen_factors, latents, diff_quantile=0.99):
    num_gen = gen_factors.shape[1]
    num_lat = latents.shape[1]
    max_deviations = np.max(np.abs(latents - latents.mean(axis=0)), axis=0)
    cum_deviations = np.zeros([num_lat, num_gen])
    for i in range(num_gen):
        unique_factors = np.unique(gen_factors[:, i], axis=0)
        num_distinct_factors = unique_factors.shape[0]
        for k in range(num_distinct_factors):
            match = gen_factors[:, i] == unique_factors[k]
            e_loc = np.mean(latents[match, :], axis=0)
            diffs = np.abs(latents[match, :] - e_loc)
            max_diffs = np.percentile(diffs, q=diff_quantile * 100, axis=0)
            cum_deviations[:, i] += max_diffs
        cum_deviations[:, i] /= num_distinct_factors
    normalized_deviations = cum_deviations / max_deviations[:, np.newaxis]
    irs_matrix = 1.0 - normalized_deviations
    disentanglement_scores = irs_matrix.max(axis=1)
    if np.sum(max_deviations) > 0.0:
        avg_score = np.average(disentanglement_scores, weights=max_deviations)
    else:
        avg_score = np.mean(disentanglement_scores)
    return avg_score


def irs(mus, ys):
    """dlib's compute_irs after its sampling: codes (d, n), factors (K, n)."""
    ys_discrete = _histogram_discretize(ys)
    active_mus = _drop_constant_dims(mus)
    if not active_mus.any():
        return 0.0
    return scalable_disentanglement_score(ys_discrete.T, active_mus.T, 0.99)


def unsupervised(mus_train):
    """dlib's unsupervised_metrics after its sampling: codes (d, n)."""
    scores = {}
    num_codes = mus_train.shape[0]
    cov_mus = np.cov(mus_train)
    scores["gaussian_total_correlation"] = 0.5 * (np.sum(np.log(np.diag(cov_mus))) - np.linalg.slogdet(cov_mus)[1])
    sqrtm = scipy.linalg.sqrtm(cov_mus * np.expand_dims(np.diag(cov_mus), axis=1))
    scores["gaussian_wasserstein_correlation"] = 2 * np.trace(cov_mus) - 2 * np.trace(sqrtm)
    mus_discrete = _histogram_discretize(mus_train)
    mutual_info_matrix = discrete_mutual_info(mus_discrete, mus_discrete)
    np.fill_diagonal(mutual_info_matrix, 0)
    scores["mutual_info_score"] = np.sum(mutual_info_matrix) / (num_codes**2 - num_codes)
    return scores
