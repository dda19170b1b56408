#!/bin/sh
# make demo: the main job of dalign as it stands. Until the latent diffusion
# model lands, that is the core's end-to-end toy: train a tiny 2-D diffusion
# model, sample it, save and reload the weights.
set -e
bin=$1
mkdir -p out
echo "== dalign demo: training a 2-D toy diffusion model with the core (about 10 s)"
"$bin" toy -o out/toy.safetensors
echo "== the checkpoint's tensors (dalign inspect out/toy.safetensors):"
"$bin" inspect out/toy.safetensors
echo "== done: weights in out/toy.safetensors"
