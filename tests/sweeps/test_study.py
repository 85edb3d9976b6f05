"""Study helpers that need no server."""

import optuna


def test_a_lost_database_is_found_behind_optunas_own_error():
    """Optuna 5 re-raises a failed tell as UnboundLocalError; the storage error is its context."""
    from betasweep.sweeps.study import storage_failure

    lost = optuna.exceptions.StorageInternalError("connection refused")
    try:
        try:
            raise lost
        except optuna.exceptions.StorageInternalError:
            raise UnboundLocalError("cannot access local variable 'updated_state'")
    except UnboundLocalError as error:
        assert storage_failure(error) is lost
    assert storage_failure(ValueError("unrelated")) is None
