#!/usr/bin/env bash
# The SheepRL DreamerV3 peer run at the budget and sizes of suites/learning-cpu.yaml (seed 0), then
# its final evaluation over 10 seeded episodes. Run from this folder; writes sheeprl-s0-*.csv here.
# SheepRL in its own venv (its pins differ from wmbench's):
#   python3.11 -m venv .venv-peer && .venv-peer/bin/pip install sheeprl==0.8.4 torch==2.13.0 \
#       mujoco==3.17.0 dm-control==1.0.50
# Versions used: sheeprl 0.8.4, torch 2.13.0+cpu, lightning 2.6.6, dm_control 1.0.50, mujoco 3.17.0,
# gymnasium 1.4.0, Python 3.11.7.
set -euo pipefail
PY=${PY:-.venv-peer/bin/python}
export MUJOCO_GL=${MUJOCO_GL:-egl}
# Budget as the wmbench suite: 80,000 env frames at action repeat 8 = 10,000 policy steps, 4,000
# frames (500 policy steps) of random prefill, 0.5 updates per policy step of 16 x 32 (train ratio
# 256) = 4,750 updates; networks as the suite's (MLPs 200 x 2 layers, CNN multiplier 16, GRU 200,
# 16 x 8 categorical latents) and its learning rates (3e-4 world model, 1e-4 actor and critic).
# Everything else is SheepRL's DreamerV3 default. Its env renders every frame with dm_control's
# standard renderer (wmbench's suite: the last frame of each action repeat, render_quality fast).
"$(dirname "$PY")/sheeprl" exp=dreamer_v3 algo=dreamer_v3_XS env=dmc \
  env.wrapper.domain_name=cartpole env.wrapper.task_name=swingup \
  env.wrapper.from_vectors=False env.wrapper.from_pixels=True \
  env.id=cartpole_swingup env.num_envs=1 env.sync_env=True env.action_repeat=8 \
  env.max_episode_steps=-1 env.capture_video=False \
  'algo.cnn_keys.encoder=[rgb]' 'algo.mlp_keys.encoder=[]' \
  algo.total_steps=10000 algo.learning_starts=500 algo.replay_ratio=0.5 \
  algo.per_rank_batch_size=16 algo.per_rank_sequence_length=32 \
  algo.dense_units=200 algo.mlp_layers=2 \
  algo.world_model.encoder.cnn_channels_multiplier=16 \
  algo.world_model.recurrent_model.recurrent_state_size=200 \
  algo.world_model.transition_model.hidden_size=200 \
  algo.world_model.representation_model.hidden_size=200 \
  algo.world_model.stochastic_size=16 algo.world_model.discrete_size=8 \
  algo.world_model.optimizer.lr=3e-4 algo.actor.optimizer.lr=1e-4 algo.critic.optimizer.lr=1e-4 \
  buffer.size=100000 buffer.memmap=False buffer.checkpoint=False \
  checkpoint.every=100000 checkpoint.save_last=True \
  metric.log_every=125 metric.log_level=1 \
  fabric.accelerator=cpu fabric.devices=1 fabric.precision=32-true \
  seed=0 root_dir=learning-cpu run_name=s0 | tee sheeprl-s0.log
# One line per training episode: "Rank-0: policy_step=<steps>, reward_env_0=<return>"
"$PY" - <<'PYEOF'
import csv, re
rows = [(int(m[1]) * 8, float(m[2])) for m in
        re.finditer(r"policy_step=(\d+), reward_env_0=([-\d.e]+)", open("sheeprl-s0.log").read())]
with open("sheeprl-s0-episodes.csv", "w", newline="") as f:
    csv.writer(f).writerows([("env_frames", "return"), *rows])
PYEOF
"$PY" evaluate_sheeprl.py logs/runs/learning-cpu/s0/version_0/checkpoint/ckpt_10000_0.ckpt \
  --episodes 10 --out sheeprl-s0-final.csv
