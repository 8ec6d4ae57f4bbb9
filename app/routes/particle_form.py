"""The form fields ``/complete`` and ``/upscale`` share: how many results, of how many particles
each, from which seeds, at which temperature, of which class, and how they come back."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Form

from app.durable.context import choose_seed
from app.schemas import MAX_TEMPERATURE, SEED_LIMIT, Format, check_particle_work, check_seed, parse_label
from app.serving import ServingDep, SettingsDep


@dataclass(frozen=True)
class ParticleForm:
    """The checked fields. ``seeds``: one per result, ``seed + i`` (a random base when none
    was given); ``label``: the class index asked for, or None."""

    n: int
    particles: int
    seeds: list[int]
    temperature: float
    label: int | None
    invert: bool
    format: Format
    scale: int


async def particle_form(
    serving: ServingDep,
    settings: SettingsDep,
    n: Annotated[int, Form(ge=1)] = 4,
    particles: Annotated[int, Form(ge=1, description="particles per result (SIR)")] = 8,
    seed: Annotated[int | None, Form(ge=0, lt=SEED_LIMIT, description="result i uses seed + i")] = None,
    temperature: Annotated[float, Form(gt=0, le=MAX_TEMPERATURE)] = 1.0,
    label: Annotated[
        str | None,
        Form(
            description="a class index or name (GET /model lists them); empty = /upscale takes the "
            "classifier's guess from the small image, else each result infers its own (reported either way)"
        ),
    ] = None,
    invert: Annotated[bool, Form(description="the upload is dark on light")] = False,
    format: Annotated[Format, Form()] = "png",
    scale: Annotated[int, Form(ge=1, le=16, description="nearest-neighbour upscaling")] = 1,
) -> ParticleForm:
    check_particle_work(n, particles, settings)
    check_seed(seed, n)
    base = seed if seed is not None else choose_seed(random.randrange(SEED_LIMIT - n + 1))
    return ParticleForm(
        n=n,
        particles=particles,
        seeds=[base + i for i in range(n)],
        temperature=temperature,
        label=parse_label(label, serving.model.config.label_names),
        invert=invert,
        format=format,
        scale=scale,
    )


ParticleFormDep = Annotated[ParticleForm, Depends(particle_form)]
