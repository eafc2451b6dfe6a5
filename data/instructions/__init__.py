"""Instruction-tuning data: records, file and hub loading, the Alpaca template and a generated dataset."""
