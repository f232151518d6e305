"""Fine-tuning methods: build the trainable model for lora/dora/rslora, ia3, prompt_tuning, full, freeze, qlora."""

from __future__ import annotations

import torch

from foundation.errors import ArenaError
from foundation.models import require_safetensors
from training.config import JobConfig
from training.reward import build_reward_model
from training.unfreeze import Stage, apply_stage, decoder_layers, parse_schedule

PEFT_METHODS = {"lora", "ia3", "prompt_tuning", "qlora", "dpo", "rloo"}


def check_qlora(device: torch.device) -> None:
    """QLoRA needs CUDA and bitsandbytes: refuse clearly instead of crashing deep inside a library."""
    if device.type != "cuda":
        raise ArenaError("method 'qlora' needs a CUDA GPU (4-bit bitsandbytes kernels); this run is on "
                         f"{device.type}. Use method 'lora' on CPU, or run on a GPU machine.")
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        raise ArenaError("method 'qlora' needs the bitsandbytes package: pip install bitsandbytes") from None


def peft_config(cfg: JobConfig):
    """The peft config for a PEFT method (dpo trains a LoRA adapter)."""
    from peft import IA3Config, LoraConfig, PromptTuningConfig, TaskType

    if cfg.method == "ia3":
        return IA3Config(task_type=TaskType.CAUSAL_LM)
    if cfg.method == "prompt_tuning":
        return PromptTuningConfig(task_type=TaskType.CAUSAL_LM, num_virtual_tokens=cfg.num_virtual_tokens)
    return LoraConfig(task_type=TaskType.CAUSAL_LM, r=cfg.lora_r, lora_alpha=cfg.alpha,
                      lora_dropout=cfg.lora_dropout, target_modules=cfg.targets,
                      use_dora=cfg.use_dora, use_rslora=cfg.use_rslora)


def freeze_lower(model, train_layers: int) -> None:
    """Train only the top `train_layers` blocks and the final norm; everything else is frozen."""
    layers = decoder_layers(model)
    if not 1 <= train_layers <= len(layers):
        raise ArenaError(f"train_layers must be 1..{len(layers)} for this model, got {train_layers}")
    apply_stage(model, Stage(train_layers, step=0))  # a schedule of one stage


def load_base(path: str, cfg: JobConfig, device: torch.device, trust_remote_code: bool = False):
    """The base model in fp32 (master weights; bf16 is applied as autocast by the trainer), or 4-bit for qlora."""
    from transformers import AutoModelForCausalLM

    kwargs = {"dtype": torch.float32, "trust_remote_code": trust_remote_code, "use_safetensors": True}
    if cfg.method == "qlora":
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.bfloat16)
        kwargs["dtype"] = torch.bfloat16
    return AutoModelForCausalLM.from_pretrained(path, **kwargs)


def build_trainable(cfg: JobConfig, base_model_path: str, device: torch.device, init=None,
                    trust_remote_code: bool = False):
    """Load the base (or the init_from full model) and make the right parameters trainable."""
    if cfg.method == "qlora":
        check_qlora(device)
    if cfg.method == "reward":
        return build_reward_model(cfg, base_model_path, init, trust_remote_code)
    if init is not None:
        require_safetensors(init.path, f"adapter {init.name!r} folder")
    continue_full = init is not None and init.peft_type is None
    if continue_full and cfg.method in PEFT_METHODS:
        raise ArenaError(f"init_from {init.name!r} is a full model; continue it with method full or freeze")
    model = load_base(str(init.path) if continue_full else base_model_path, cfg, device, trust_remote_code)
    if cfg.method in {"full", "freeze"}:
        if init is not None and not continue_full:
            raise ArenaError(f"init_from {init.name!r} is a {init.peft_type} adapter; continue it with its method")
        if cfg.method == "freeze" and cfg.unfreeze_schedule:
            # Before the trainer exists: every parameter of the last stage trainable, so the optimizer holds
            # them; the callback (training/unfreeze.py) freezes what is not due yet.
            apply_stage(model, parse_schedule(cfg.unfreeze_schedule)[-1])
        elif cfg.method == "freeze":
            freeze_lower(model, cfg.train_layers)
        return model
    from peft import PeftModel, get_peft_model, prepare_model_for_kbit_training

    if cfg.method == "qlora":
        model = prepare_model_for_kbit_training(model)
    if init is not None:
        return PeftModel.from_pretrained(model, str(init.path), is_trainable=True)
    return get_peft_model(model, peft_config(cfg))


def trainable_summary(model) -> dict:
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {"trainable_params": trainable, "total_params": total}
