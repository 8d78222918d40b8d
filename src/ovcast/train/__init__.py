"""Training, fine-tuning and evaluation, split by verb (needs ``ovcast[convert]`` to train).

config.py       every knob, as flat dataclasses that are also the CLI options
data.py         a Series from a CSV, from bars (CSV or recording) or from arrays
splits.py       splits by time (with a gap or the standard protocol), scaler, windows
forecasters.py  a model (PyTorch or OpenVINO) and the naive baselines, as forecasters
metrics.py      per-step error sums: MSE/MAE scaled and in data units, direction
evaluate.py     evaluate(forecasters, windows, scaler) -> Report, for every verb below
report.py       the Report: table, JSON, plot
loop.py         fit(model, data, config, out): the one training loop
trainer.py      train(TrainConfig)          ovcast train
finetune.py     finetune(FinetuneConfig)    ovcast finetune
"""
