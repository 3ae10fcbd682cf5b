"""Checking a backend and describing its models, against the real backend on loopback."""

from __future__ import annotations

import importlib

import pytest


def _connection():
    return importlib.import_module("AttUMambaSegLib.logic.connection")


def test_check_backend_in_background(client, logic):
    future = _connection().in_background(_connection().check_backend, client)
    status = future.result(timeout=60)
    names = [model["name"] for model in status.models]
    assert "tiny" in names  # beside the shipped default model
    assert status.health["devices"] == ["cpu"]
    assert status.summary().endswith(f"on cpu; {len(names)} model" + ("s" if len(names) > 1 else ""))


def test_a_wrong_token_fails_in_the_future_with_what_to_do(client, logic):
    wrong = importlib.import_module("AttUMambaSegLib.logic.client").BackendClient(client.url, "wrong")
    future = _connection().in_background(_connection().check_backend, wrong)
    with pytest.raises(Exception, match="refused the token"):
        future.result(timeout=60)


def test_model_choices_and_description(logic):
    models = [{"name": "attumamba-petct", "display_name": "Att-UMamba PET/CT", "architecture": "attumamba",
               "description": "Whole-body lesions", "inputs": ["CT", "PET"], "target_spacing_mm": [2.0, 2.0, 3.0],
               "folds": ["fold_0", "fold_1"], "license": "CC-BY-4.0",
               "metrics": {"dice": 0.71234, "fpv_ml": 1.5, "per_case": {"a": 1}, "flag": True}},
              {"name": "bare"}, {"display_name": "no name"}]
    assert _connection().model_choices(models) == [("attumamba-petct", "Att-UMamba PET/CT"), ("bare", "bare")]
    text = _connection().describe_model(models[0])
    assert text.splitlines() == [
        "Whole-body lesions",
        ("architecture attumamba; inputs CT, PET (CT in HU, PET in SUV); spacing 2 x 2 x 3 mm; "
         "folds fold_0, fold_1; license CC-BY-4.0"),
        "measured: dice 0.712, fpv_ml 1.5"]
    assert _connection().describe_model({"name": "bare"}) == "bare"
    assert "connect to a backend" in _connection().describe_model(None)


def test_summary_without_models(logic):
    status = _connection().BackendStatus({"version": "1.2", "devices": ["cuda"], "mamba_ssm_kernels": True}, [])
    assert status.summary() == "backend 1.2 on cuda; mamba-ssm kernels; no models installed"
