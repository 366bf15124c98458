"""`oneword world pretrain`: train the world model (VAE, text encoder + UNet) and its judge from scratch.

Stages (each time-boxed by a share of --minutes, steps capped; the record lists what ran):
  1. render N pretraining scenes (no held-out combination, no novel concept as such), 3 captions each;
  2. AutoencoderKL 32x32x3 -> 8x8x8 (MSE + L1 + tiny KL; 8 latent channels because 4 lost the 32 px
     styles and thin shapes); latent scaling factor measured on the data;
  3. CLIPTextModel + UNet2DConditionModel on cached latents, epsilon loss, DDPM schedule, 10% empty
     captions (classifier-free guidance), EMA weights;
  4. the judge: a small CLIPModel (contrastive) and the attribute oracle (renders of the whole world,
     render.image_scene, held-out combinations included, + their VAE reconstructions);
  5. save a StableDiffusionPipeline folder (DDIM scheduler) to OUT/model and the judge to OUT/judge,
     each written to a temporary folder first and renamed into place.
`tune_judge` continues one part of a trained model's judge (the oracle, or the CLIP in the judge's language:
every value named) on renders of the whole world.
"""

from __future__ import annotations

import copy
import json
import math
import os
import platform
import shutil
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import OnewordError
from ..models import _dtype_keyword
from .concepts import pretraining_exclusions
from .judge import ORACLE_LABELS, Oracle, images_to_tensor, save_oracle
from .render import JUDGE_ONLY_WORDS, caption, image_scene, pretraining_scene, render_array, world_words
from .vocab import write_world_tokenizer

MAX_LENGTH = 20
# The judge's CLIP sees un-named values three times as often as pretraining does: each un-named shape is
# otherwise 5% of objects, too rare for 32 px renders of an arrow or an hourglass to part from a triangle's.
CLIP_P_UNNAMED = 0.45
TEXT_HIDDEN = 128

FULL = dict(
    n_scenes=24000,
    vae_ch=(16, 32, 32),
    latent_ch=8,
    unet_ch=(48, 96),
    unet_heads=4,
    text_layers=3,
    text_inter=512,
    vae_bs=64,
    unet_bs=128,
    clip_bs=256,
    oracle_bs=128,
    clip_width=96,
    oracle_width=48,
    share={"vae": 0.25, "unet": 0.55, "clip": 0.05, "oracle": 0.12},
    max_steps={"vae": 15000, "unet": 30000, "clip": 3000, "oracle": 6000},
)
TINY = dict(
    n_scenes=96,
    vae_ch=(8, 16, 16),
    latent_ch=8,
    unet_ch=(16, 32),
    unet_heads=2,
    text_layers=1,
    text_inter=64,
    vae_bs=16,
    unet_bs=16,
    clip_bs=32,
    oracle_bs=16,
    clip_width=32,
    oracle_width=8,
    share={"vae": 0.25, "unet": 0.25, "clip": 0.25, "oracle": 0.25},
    max_steps={"vae": 3, "unet": 3, "clip": 2, "oracle": 2},
)


class Log:
    def __init__(self, quiet=False):
        self.t0 = time.time()
        self.quiet = quiet

    def __call__(self, msg):
        if not self.quiet:
            print(f"[{(time.time() - self.t0) / 60:6.2f} min] {msg}", flush=True)


def _lr(step, frac, base, warmup):
    return base * min(1.0, (step + 1) / warmup) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(frac, 1.0))))


def _loop(name, seconds, max_steps, step_fn, log, every=50):
    """Run step_fn(step, frac) until time or steps run out; return (steps, seconds)."""
    t0 = time.time()
    step = 0
    run = 0.0
    while step < max_steps:
        frac = max((time.time() - t0) / seconds, step / max_steps)
        if frac >= 1.0 and step > 0:
            break
        loss = step_fn(step, frac).detach()  # a tensor: no host-device sync per step on a GPU
        run = loss if step == 0 else 0.98 * run + 0.02 * loss
        step += 1
        if step % every == 0:
            log(f"{name} step {step} loss {float(run):.4f} ({(time.time() - t0) / step:.3f} s/step)")
    dt = time.time() - t0
    run = float(run)
    log(f"{name} done: {step} steps in {dt / 60:.1f} min, loss {run:.4f}")
    return step, dt, run


def build_models(tok, cfg):
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        block_out_channels=cfg["vae_ch"],
        latent_channels=cfg["latent_ch"],
        down_block_types=("DownEncoderBlock2D",) * 3,
        up_block_types=("UpDecoderBlock2D",) * 3,
        layers_per_block=1,
        norm_num_groups=8,
        sample_size=32,
        mid_block_add_attention=False,
    )
    text = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(tok),
            hidden_size=TEXT_HIDDEN,
            intermediate_size=cfg["text_inter"],
            num_hidden_layers=cfg["text_layers"],
            num_attention_heads=4,
            max_position_embeddings=MAX_LENGTH,
            bos_token_id=tok.bos_token_id,
            eos_token_id=tok.eos_token_id,
            pad_token_id=tok.pad_token_id,
        )
    )
    unet = UNet2DConditionModel(
        sample_size=8,
        in_channels=cfg["latent_ch"],
        out_channels=cfg["latent_ch"],
        layers_per_block=1,
        block_out_channels=cfg["unet_ch"],
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=TEXT_HIDDEN,
        attention_head_dim=cfg["unet_heads"],
        norm_num_groups=16 if cfg["unet_ch"][0] >= 32 else 8,
    )
    return vae, text, unet


def build_clip(tok, cfg):
    from transformers import CLIPConfig, CLIPModel

    w = cfg["clip_width"]
    config = CLIPConfig(
        text_config=dict(
            vocab_size=len(tok),
            hidden_size=w,
            intermediate_size=2 * w,
            num_hidden_layers=2,
            num_attention_heads=4,
            max_position_embeddings=MAX_LENGTH,
            bos_token_id=tok.bos_token_id,
            eos_token_id=tok.eos_token_id,
            pad_token_id=tok.pad_token_id,
        ),
        vision_config=dict(
            image_size=32,
            patch_size=4,
            hidden_size=w,
            intermediate_size=2 * w,
            num_hidden_layers=3,
            num_attention_heads=4,
            num_channels=3,
        ),
        projection_dim=64,
    )
    return CLIPModel(config)


def pretrain(
    out: str | Path,
    seed: int = 0,
    minutes: float = 40.0,
    tiny: bool = False,
    quiet: bool = False,
    threads: int | None = None,
    cache: str | Path | None = None,
    init_from: str | Path | None = None,
    keep_vae: bool = False,
    unet_batch: int | None = None,
    scenes: int | None = None,
    hedge: float = 0.0,
) -> dict:
    """Train everything and write OUT/model and OUT/judge. Returns the training record.

    cache: a folder where the trained VAE is kept (and reused by a rerun with the same seed).
    init_from: a folder holding model/ and judge/ of an earlier run: continue training from its weights;
    keep_vae: with init_from, keep its VAE and latent scaling as they are (the UNet keeps the latent space it
    learned) and give the VAE's share of the time to the UNet.
    unet_batch: the UNet's batch (default 128); a GPU takes 512 at about the cost of 128 (8x8 latents).
    scenes: how many scenes to render (default 24,000): more scenes, fewer epochs over each, for long runs.
    hedge: probability that a caption calls an un-named colour one of its two nearest named colours
    (render.caption; default 0, the world's design: un-named colours are never mentioned).
    """
    from diffusers import DDIMScheduler, DDPMScheduler, StableDiffusionPipeline
    from transformers import CLIPTokenizer

    cfg = dict(TINY if tiny else FULL)
    if unet_batch:
        cfg["unet_bs"] = unet_batch
    if scenes:
        cfg["n_scenes"] = scenes
    if keep_vae and not init_from:
        raise OnewordError("--keep-vae needs --init-from (the run whose VAE to keep)")
    share = dict(cfg["share"])
    if keep_vae:
        share["unet"] += share.pop("vae")
    log = Log(quiet)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if threads:
        torch.set_num_threads(threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    budget = minutes * 60.0
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    record = {
        "seed": seed,
        "minutes_budget": minutes,
        "device": str(device),
        "machine": platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
        "tiny": tiny,
        "caption_hedge": hedge,
        "stages": {},
    }
    work = Path(out) / f".pretrain-{os.getpid()}.tmp"
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    try:
        tok = CLIPTokenizer.from_pretrained(str(write_world_tokenizer(work / "tokenizer", world_words(), MAX_LENGTH)))

        # ---------------------------------------------------------------- 1. data
        t = time.time()
        excl = pretraining_exclusions()
        n = cfg["n_scenes"]
        scenes = [pretraining_scene(rng, excl) for _ in range(n)]
        imgs = render_array(scenes, 32, seed)
        caps = [[caption(s, rng, hedge=hedge) for _ in range(3)] for s in scenes]
        ids = tok(
            [c for cs in caps for c in cs],
            padding="max_length",
            truncation=True,
            max_length=MAX_LENGTH,
            return_tensors="pt",
        ).input_ids.view(n, 3, MAX_LENGTH)
        empty = tok([""], padding="max_length", max_length=MAX_LENGTH, return_tensors="pt").input_ids[0]
        x_all = images_to_tensor(imgs)
        x_img, img_labels, _ = _world_images(min(n, 24000), rng, seed, excl)  # for the oracle: every case it measures
        record["stages"]["data"] = {"scenes": n, "seconds": round(time.time() - t, 1)}
        log(f"rendered {n} scenes, vocabulary {len(tok)} ids, example caption: {caps[0][0]!r}")

        vae, text, unet = build_models(tok, cfg)
        if init_from:  # warm start: continue training a previous run's weights (same architecture)
            init = Path(init_from)
            for name, m in (("vae", vae), ("text_encoder", text), ("unet", unet)):
                m.load_state_dict(_load_weights(init / "model" / name))
            record["init_from"] = json.loads((init / "model" / "oneword_world.json").read_text())
            log(f"warm start from {init}")
        for m in (vae, text, unet):
            m.to(device)
        record["params"] = {
            k: sum(p.numel() for p in m.parameters()) for k, m in (("vae", vae), ("text_encoder", text), ("unet", unet))
        }
        log(f"parameters: {record['params']}")

        # ---------------------------------------------------------------- 2. VAE
        g = torch.Generator().manual_seed(seed + 1)
        vae.train()
        cached = Path(cache) / f"vae-seed{seed}.pt" if cache else None
        kept_sf = None
        if keep_vae:
            kept_sf = json.loads((Path(init_from) / "model" / "vae" / "config.json").read_text())["scaling_factor"]
            record["stages"]["vae"] = {"steps": 0, "kept_from": str(init_from)}
            log(f"vae kept from {init_from} (scaling factor {kept_sf:.4f})")
        elif cached and cached.is_file():  # a previous run's VAE stage (same code, same seed)
            saved = torch.load(cached, map_location=device, weights_only=True)
            vae.load_state_dict(saved["state"])
            record["stages"]["vae"] = dict(saved["record"], from_cache=str(cached))
            log(f"vae loaded from {cached}")
        else:
            step_fn = _vae_step(vae, x_all, cfg["vae_bs"], g, device)
            steps, dt, loss = _loop("vae", budget * share["vae"], cfg["max_steps"]["vae"], step_fn, log)
            record["stages"]["vae"] = {
                "steps": steps,
                "batch": cfg["vae_bs"],
                "seconds": round(dt, 1),
                "loss": round(loss, 5),
            }
            if cached:
                cached.parent.mkdir(parents=True, exist_ok=True)
                torch.save({"state": vae.state_dict(), "record": record["stages"]["vae"]}, cached)
        vae.eval().requires_grad_(False)

        # latents (posterior means) and the scaling factor
        t = time.time()
        with torch.no_grad():
            lat = torch.cat(
                [vae.encode(x_all[i : i + 512].to(device)).latent_dist.mean.cpu() for i in range(0, n, 512)]
            )
            sf = kept_sf or float(1.0 / lat.std())
            vae.register_to_config(scaling_factor=sf)
            lat = lat * sf
            recon = _reconstruct(vae, x_img[:12000], device)  # the oracle also reads decoded images
            rec_mse = float(F.mse_loss(recon, x_img[:12000]))  # on renders of the whole world
        record["stages"]["latents"] = {
            "scaling_factor": round(sf, 5),
            "recon_mse": round(rec_mse, 5),
            "seconds": round(time.time() - t, 1),
        }
        log(f"latents cached: scaling factor {sf:.4f}, reconstruction MSE {rec_mse:.5f}")

        # ---------------------------------------------------------------- 3. text encoder + UNet
        sched = DDPMScheduler(
            beta_start=0.00085,
            beta_end=0.012,
            beta_schedule="scaled_linear",
            num_train_timesteps=1000,
            clip_sample=False,
            prediction_type="epsilon",
        )
        acp = sched.alphas_cumprod.to(device)
        params = list(unet.parameters()) + list(text.parameters())
        opt = torch.optim.AdamW(params, lr=6e-4, weight_decay=0.01)
        ema_unet, ema_text = copy.deepcopy(unet).requires_grad_(False), copy.deepcopy(text).requires_grad_(False)
        live_params = [p for m in (unet, text) for p in m.parameters()]
        ema_params = [e for em in (ema_unet, ema_text) for e in em.parameters()]
        unet.train()
        text.train()

        def unet_step(step, frac):
            bs = cfg["unet_bs"]
            idx = torch.randint(0, n, (bs,), generator=g)
            which = torch.randint(0, 3, (bs,), generator=g)
            tid = ids[idx, which]
            drop = torch.rand(bs, generator=g) < 0.1
            tid[drop] = empty
            z0 = lat[idx].to(device)
            noise = torch.randn(z0.shape, generator=g).to(device)
            ts = torch.randint(0, 1000, (bs,), generator=g).to(device)
            a = acp[ts].view(-1, 1, 1, 1)
            zt = a.sqrt() * z0 + (1 - a).sqrt() * noise
            enc = text(tid.to(device))[0]
            pred = unet(zt, ts, enc).sample
            loss = F.mse_loss(pred, noise)
            _update(opt, loss, _lr(step, frac, 6e-4, 200), clip_params=params)
            d = 0.0 if step < 200 else min(0.998, (1 + step) / (10 + step))
            with torch.no_grad():
                torch._foreach_lerp_(ema_params, live_params, 1 - d)  # one fused op, not one per tensor
            return loss

        steps, dt, loss = _loop("unet", budget * share["unet"], cfg["max_steps"]["unet"], unet_step, log)
        record["stages"]["unet"] = {
            "steps": steps,
            "batch": cfg["unet_bs"],
            "seconds": round(dt, 1),
            "loss": round(loss, 5),
            "ema": 0.998,
            "cfg_dropout": 0.1,
        }
        unet, text = ema_unet.eval(), ema_text.eval()

        # ---------------------------------------------------------------- 4. judge: CLIP, in the judge's language
        if init_from:
            judge_tok, clip = _judge_language_clip(Path(init_from) / "judge" / "clip", work / "judge_tokenizer")
        else:
            judge_tok = _judge_tokenizer(work / "judge_tokenizer")
            clip = build_clip(judge_tok, cfg)
        x_clip, _, clip_scenes = _world_images(min(n, 24000), rng, seed + 1, excl, CLIP_P_UNNAMED)
        clip_step = _clip_step(
            clip.to(device).train(),
            x_clip,
            _judge_caption_ids(clip_scenes, judge_tok, rng),
            _reconstruct(vae, x_clip[:12000], device),
            cfg["clip_bs"],
            g,
            device,
            lr=5e-4 if init_from else 1e-3,
        )
        steps, dt, loss = _loop("clip", budget * share["clip"], cfg["max_steps"]["clip"], clip_step, log)
        record["stages"]["clip"] = {
            "steps": steps,
            "batch": cfg["clip_bs"],
            "seconds": round(dt, 1),
            "loss": round(loss, 4),
            "p_unnamed": CLIP_P_UNNAMED,
        }
        clip.eval()

        # ---------------------------------------------------------------- 4b. judge: oracle
        oracle = Oracle(ORACLE_LABELS, cfg["oracle_width"])
        if init_from:
            from safetensors.torch import load_file

            oracle.load_state_dict(load_file(str(Path(init_from) / "judge" / "oracle.safetensors")))
        oracle = oracle.to(device)
        oracle.train()
        oracle_step = _oracle_step(oracle, x_img, img_labels, recon, cfg["oracle_bs"], g, device)
        steps, dt, loss = _loop("oracle", budget * share["oracle"], cfg["max_steps"]["oracle"], oracle_step, log)
        record["stages"]["oracle"] = {
            "steps": steps,
            "batch": cfg["oracle_bs"],
            "seconds": round(dt, 1),
            "loss": round(loss, 4),
        }
        oracle.eval()

        # ---------------------------------------------------------------- 5. save
        ddim = DDIMScheduler(
            beta_start=0.00085,
            beta_end=0.012,
            beta_schedule="scaled_linear",
            clip_sample=False,
            set_alpha_to_one=False,
            steps_offset=1,
            prediction_type="epsilon",
        )
        pipe = StableDiffusionPipeline(
            vae=vae.cpu(),
            text_encoder=text.cpu(),
            tokenizer=tok,
            unet=unet.cpu(),
            scheduler=ddim,
            safety_checker=None,
            feature_extractor=None,
            requires_safety_checker=False,
        )
        record["total_minutes"] = round((time.time() - log.t0) / 60, 2)
        record["torch"] = torch.__version__
        tmp_model, tmp_judge = work / "model", work / "judge"
        pipe.save_pretrained(str(tmp_model))
        _to_fp16(tmp_model)
        (tmp_model / "oneword_world.json").write_text(json.dumps(record, indent=1))
        clip.cpu().save_pretrained(str(tmp_judge / "clip"))
        judge_tok.save_pretrained(str(tmp_judge / "clip"))
        save_oracle(oracle.cpu(), tmp_judge)
        for name in ("model", "judge"):
            _swap_into_place(work / name, out / name)
        log(f"saved {out / 'model'} and {out / 'judge'} ({record['total_minutes']} min total)")
        return record
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _update(opt, loss, lr: float, clip_params=None) -> None:
    """One optimiser step on loss at learning rate lr (gradient norm clipped to 1 over clip_params if given)."""
    for pg in opt.param_groups:
        pg["lr"] = lr
    opt.zero_grad(set_to_none=True)
    loss.backward()
    if clip_params is not None:
        torch.nn.utils.clip_grad_norm_(clip_params, 1.0)
    opt.step()


def _world_images(n: int, rng, seed: int, excluded: set, p_unnamed: float = 0.15) -> tuple[torch.Tensor, dict, list]:
    """n renders of the whole world (render.image_scene), their labels and scenes: what the judge learns from
    (the VAE, text encoder and UNet learn from the pretraining scenes only)."""
    scenes = [image_scene(rng, excluded, p_unnamed) for _ in range(n)]
    labels = {k: torch.tensor([v.index(s.attributes()[k]) for s in scenes]) for k, v in ORACLE_LABELS.items()}
    return images_to_tensor(render_array(scenes, 32, seed + 7)), labels, scenes


def _reconstruct(vae, x, device) -> torch.Tensor:
    """VAE reconstructions (posterior means, decoded) of images x, in batches."""
    with torch.no_grad():
        return torch.cat(
            [
                vae.decode(vae.encode(x[i : i + 512].to(device)).latent_dist.mean).sample.clamp(-1, 1).cpu()
                for i in range(0, len(x), 512)
            ]
        )


def _oracle_step(oracle, x_all, labels, recon, batch, g, device):
    """One oracle step: cross-entropy on every label, half the images replaced by their VAE reconstruction
    (the oracle reads generated images, which come through the decoder)."""
    opt = torch.optim.AdamW(oracle.parameters(), lr=2e-3, weight_decay=1e-4)

    def step_fn(step, frac):
        idx = torch.randint(0, len(x_all), (batch,), generator=g)
        x = x_all[idx].clone()
        use_rec = (idx < len(recon)) & (torch.rand(batch, generator=g) < 0.5)
        if use_rec.any():
            x[use_rec] = recon[idx[use_rec]]
        logits = oracle(x.to(device))
        loss = sum(F.cross_entropy(logits[k], labels[k][idx].to(device)) for k in labels)
        _update(opt, loss, _lr(step, frac, 2e-3, 100))
        return loss

    return step_fn


def _vae_step(vae, x_all, batch, g, device):
    """One AutoencoderKL step (MSE + 0.3 L1 + 1e-6 KL) on a random batch of x_all."""
    params = list(vae.parameters())
    opt = torch.optim.AdamW(params, lr=1e-3, weight_decay=0.0)

    def step_fn(step, frac):
        x = x_all[torch.randint(0, len(x_all), (batch,), generator=g)].to(device)
        post = vae.encode(x).latent_dist
        rec = vae.decode(post.sample()).sample
        loss = F.mse_loss(rec, x) + 0.3 * F.l1_loss(rec, x) + 1e-6 * post.kl().mean()
        _update(opt, loss, _lr(step, frac, 1e-3, 100), clip_params=params)
        return loss

    return step_fn


def tune_judge(
    src: str | Path,
    out: str | Path,
    part: str = "oracle",
    minutes: float = 6.0,
    seed: int = 0,
    tiny: bool = False,
    quiet: bool = False,
    threads: int | None = None,
    scenes: int | None = None,
) -> dict:
    """Continue one part of the judge of the world model in SRC on renders of the whole world
    (render.image_scene: held-out combinations included, novel concepts excluded), half of them replaced by
    their reconstructions through SRC's VAE (the judge reads generated images); write OUT/judge with the
    other part copied as is and the record in {part}_tuning.json. The model is not touched.

    part "oracle": the pretraining scenes hold no held-out combination, yet those are exactly what `world check`
    measures, so the oracle learns from renders of the whole world.
    part "clip": the CLIP learns the judge's language (captions with a name for every value, JUDGE_ONLY_WORDS;
    its token table grows, known rows kept): a judge trained on the model's captions cannot see what those
    captions never mention (patterns, un-named shapes), so reconstruction could not reward a word for them.
    Returns the record."""
    from diffusers import AutoencoderKL

    if part not in ("oracle", "clip"):
        raise OnewordError(f"unknown judge part {part!r} (oracle or clip)")
    cfg = TINY if tiny else FULL
    log = Log(quiet)
    src, out = Path(src), Path(out)
    if not (src / "model" / "vae").is_dir() or not (src / "judge" / "oracle.json").is_file():
        raise OnewordError(f"{src} holds no world model (model/ and judge/)")
    if threads:
        torch.set_num_threads(threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(seed)
    rng, g = np.random.default_rng([seed, 5]), torch.Generator().manual_seed(seed + 1)
    n = scenes or min(cfg["n_scenes"], 24000)
    p_unnamed = 0.15 if part == "oracle" else CLIP_P_UNNAMED
    x_all, labels, world = _world_images(n, rng, seed, pretraining_exclusions(), p_unnamed)
    vae = (
        AutoencoderKL.from_pretrained(str(src / "model" / "vae"), **{_dtype_keyword(): torch.float32}).to(device).eval()
    )
    recon = _reconstruct(vae, x_all[:12000], device)
    work = out / f".tune-{os.getpid()}.tmp"
    shutil.rmtree(work, ignore_errors=True)
    try:
        shutil.copytree(src / "judge", work / "judge")
        if part == "oracle":
            net = _load_oracle(src / "judge").to(device).train()
            step_fn = _oracle_step(net, x_all, labels, recon, cfg["oracle_bs"], g, device)
        else:
            tok, net = _judge_language_clip(src / "judge" / "clip", work / "tokenizer")
            net = net.to(device).train()
            step_fn = _clip_step(net, x_all, _judge_caption_ids(world, tok, rng), recon, cfg["clip_bs"], g, device)
            log(f"judge language: {len(tok)} ids")
        log(f"{part} tuning on {n} renders of the whole world and their reconstructions")
        steps, dt, loss = _loop(part, minutes * 60, cfg["max_steps"][part], step_fn, log)
        net.eval().cpu()
        record = {
            "steps": steps,
            "batch": cfg[f"{part}_bs"],
            "seconds": round(dt, 1),
            "loss": round(loss, 4),
            "images": n,
            "p_unnamed": p_unnamed,
            "seed": seed,
            "from": str(src),
        }
        earlier = src / "judge" / f"{part}_tuning.json"
        if earlier.is_file():  # a chain of tunings keeps its history
            record["continues"] = json.loads(earlier.read_text())
        if part == "oracle":
            save_oracle(net, work / "judge")
        else:
            shutil.rmtree(work / "judge" / "clip")
            net.save_pretrained(str(work / "judge" / "clip"))
            tok.save_pretrained(str(work / "judge" / "clip"))
        (work / "judge" / f"{part}_tuning.json").write_text(json.dumps(record, indent=1))
        out.mkdir(parents=True, exist_ok=True)
        _swap_into_place(work / "judge", out / "judge")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    log(f"saved {out / 'judge'}")
    return record


def tune_oracle(src, out, **kw) -> dict:
    """tune_judge(part="oracle")."""
    return tune_judge(src, out, part="oracle", **kw)


def _load_oracle(judge: Path) -> Oracle:
    from safetensors.torch import load_file

    oracle = Oracle(ORACLE_LABELS, json.loads((judge / "oracle.json").read_text())["width"])
    oracle.load_state_dict(load_file(str(judge / "oracle.safetensors")))
    return oracle


def _judge_tokenizer(dest: Path):
    """The judge's tokenizer: world words + JUDGE_ONLY_WORDS, each one token."""
    from transformers import CLIPTokenizer

    return CLIPTokenizer.from_pretrained(
        str(write_world_tokenizer(dest, world_words() + list(JUDGE_ONLY_WORDS), MAX_LENGTH))
    )


def _judge_caption_ids(scenes: list, tok, rng) -> torch.Tensor:
    """Token ids [n, 3, MAX_LENGTH] of 3 judge-language captions per scene (every value named)."""
    caps = [caption(s, rng, name_all=True) for s in scenes for _ in range(3)]
    return tok(caps, padding="max_length", truncation=True, max_length=MAX_LENGTH, return_tensors="pt").input_ids.view(
        len(scenes), 3, MAX_LENGTH
    )


def _judge_language_clip(clip_dir: Path, tok_dir: Path):
    """The judge's tokenizer (world words + JUDGE_ONLY_WORDS, each one token) and the CLIP of clip_dir with its
    token table re-indexed to it: rows of tokens it already had are kept, new tokens start from the mean row."""
    from transformers import CLIPModel, CLIPTokenizer

    old_tok = CLIPTokenizer.from_pretrained(str(clip_dir))
    tok = _judge_tokenizer(tok_dir)
    clip = CLIPModel.from_pretrained(str(clip_dir), **{_dtype_keyword(): torch.float32})
    embeddings = clip.text_model.embeddings
    old = embeddings.token_embedding.weight.detach()
    new = old.mean(0).repeat(len(tok), 1)
    old_vocab = old_tok.get_vocab()
    for token, i in tok.get_vocab().items():
        if token in old_vocab:
            new[i] = old[old_vocab[token]]
    embeddings.token_embedding = torch.nn.Embedding.from_pretrained(new, freeze=False)
    ids = {
        "vocab_size": len(tok),
        "bos_token_id": tok.bos_token_id,
        "eos_token_id": tok.eos_token_id,
        "pad_token_id": tok.pad_token_id,
    }
    for k, v in ids.items():
        setattr(clip.config.text_config, k, v)
    clip.text_model.eos_token_id = tok.eos_token_id  # the pooled output is read at the EOS position
    return tok, clip


def _clip_step(clip, x_all, ids, recon, batch, g, device, lr: float = 5e-4):
    """One contrastive CLIP step on random (image, one of its 3 captions) pairs, half the images replaced by
    their VAE reconstruction."""
    opt = torch.optim.AdamW(clip.parameters(), lr=lr, weight_decay=0.05)

    def step_fn(step, frac):
        idx = torch.randperm(len(x_all), generator=g)[:batch]
        x = x_all[idx].clone()
        use_rec = (idx < len(recon)) & (torch.rand(batch, generator=g) < 0.5)
        if use_rec.any():
            x[use_rec] = recon[idx[use_rec]]
        which = torch.randint(0, ids.shape[1], (batch,), generator=g)
        o = clip(input_ids=ids[idx, which].to(device), pixel_values=x.to(device), return_loss=True)
        _update(opt, o.loss, _lr(step, frac, lr, 50), clip_params=clip.parameters())
        return o.loss

    return step_fn


def _load_weights(folder: Path) -> dict:
    from safetensors.torch import load_file

    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise OnewordError(f"no weights in {folder}")
    sd = {}
    for f in files:
        sd.update({k: v.float() for k, v in load_file(str(f)).items()})
    return sd


def _to_fp16(folder: Path) -> None:
    """Store the UNet and VAE weights in float16 (loading upcasts: see models/world tests)."""
    from safetensors.torch import load_file, save_file

    for sub in ("unet", "vae"):
        for f in (folder / sub).glob("*.safetensors"):
            sd = load_file(str(f))
            save_file({k: v.half().contiguous() for k, v in sd.items()}, str(f), metadata={"format": "pt"})


def _swap_into_place(src: Path, dest: Path) -> None:
    """Rename src to dest, replacing any previous dest only after the new one is complete."""
    old = dest.with_name(f".{dest.name}.old-{os.getpid()}")
    if dest.exists():
        os.replace(dest, old)
    try:
        os.replace(src, dest)
    except OSError as e:
        if old.exists():
            os.replace(old, dest)
        raise OnewordError(f"cannot move the trained model into {dest}: {e}") from e
    shutil.rmtree(old, ignore_errors=True)
