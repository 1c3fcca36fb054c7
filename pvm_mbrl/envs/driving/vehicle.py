"""The ego car: a kinematic bicycle model about the centre of mass (Kong et al. 2015).

State ``(x, y, yaw, v)`` of the centre of mass, which sits mid-wheelbase and at the centre of
the car's 4.5 x 1.9 m box (highway-env uses the same model). With front steer angle ``delta``
the slip angle is ``beta = atan(l_r / (l_f + l_r) tan(delta))`` and

    x' = v cos(yaw + beta),  y' = v sin(yaw + beta),  yaw' = v sin(beta) / l_r,  v' = a,

so at constant speed and steer the centre of mass runs on a circle of radius
``l_r / sin(beta)``. Actions ``[steer, throttle]`` in ``[-1, 1]`` (clipped): ``steer`` scales
the steering limit ``delta_max(v) = min(MAX_STEER, atan(WHEELBASE * MAX_LAT_ACCEL / v^2))``
(the kinematic model has no tyre limit, so the limit caps lateral acceleration at about
0.9 g); ``throttle > 0`` accelerates at up to ``MAX_ACCEL``, ``< 0`` brakes at up to
``MAX_BRAKE``; no drag, so throttle 0 holds the speed. Speed stays in ``[0, MAX_SPEED]`` (no
reversing). Each 0.1 s control step integrates ``substeps`` sub-steps, each exactly along the
circular arc that constant steer and the mean speed give (exact at constant speed).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

LENGTH = 4.5  # m, the car's box
WIDTH = 1.9
WHEELBASE = 2.7
L_REAR = WHEELBASE / 2  # centre of mass to rear axle
MAX_STEER = 0.5  # rad, at low speed
MAX_LAT_ACCEL = 9.0  # m/s^2, caps the steer limit at speed
MAX_ACCEL = 3.5  # m/s^2
MAX_BRAKE = 8.0
MAX_SPEED = 40.0  # m/s


class Vehicle(NamedTuple):
    """Bicycle state (float32 scalars, or arrays under vmap): centre of mass, yaw, speed."""

    x: jax.Array
    y: jax.Array
    yaw: jax.Array
    v: jax.Array


def make(x, y, yaw, v) -> Vehicle:
    """A ``Vehicle`` with float32 fields."""
    return Vehicle(*(jnp.asarray(a, jnp.float32) for a in (x, y, yaw, v)))


def steer_limit(v):
    """Largest front-wheel angle (rad) at speed ``v``: ``MAX_STEER``, capped for speed."""
    v2 = jnp.maximum(jnp.asarray(v, jnp.float32) ** 2, 1e-3)
    return jnp.minimum(MAX_STEER, jnp.arctan(WHEELBASE * MAX_LAT_ACCEL / v2))


def slip_angle(delta):
    """Slip angle ``beta`` of the centre of mass for front steer ``delta``."""
    return jnp.arctan(L_REAR / WHEELBASE * jnp.tan(delta))


def turn_radius(delta):
    """Radius of the centre of mass's circle at constant steer ``delta`` (closed form)."""
    return L_REAR / jnp.abs(jnp.sin(slip_angle(delta)))


def controls(action, v):
    """Clipped action ``[steer, throttle]`` -> (front steer angle, acceleration)."""
    action = jnp.clip(jnp.asarray(action, jnp.float32), -1.0, 1.0)
    steer, pedal = action[..., 0], action[..., 1]
    accel = jnp.where(pedal > 0, pedal * MAX_ACCEL, pedal * MAX_BRAKE)
    return steer * steer_limit(v), accel


def step(car: Vehicle, action, dt: float = 0.1, substeps: int = 4) -> Vehicle:
    """Advance ``dt`` seconds under ``action`` (held), in ``substeps`` arc sub-steps."""
    delta, accel = controls(action, car.v)
    beta = slip_angle(delta)
    h = dt / substeps

    def sub(c, _):
        v1 = jnp.clip(c.v + accel * h, 0.0, MAX_SPEED)
        # Mean speed over the sub-step; exact stopping when the speed hits zero part-way.
        t_move = jnp.where((accel < 0) & (v1 == 0), c.v / jnp.maximum(-accel, 1e-6), h)
        dist = 0.5 * (c.v + v1) * jnp.minimum(t_move, h)
        turn = dist * jnp.sin(beta) / L_REAR
        chord = dist * jnp.sinc(turn / (2 * jnp.pi))
        ang = c.yaw + beta + turn / 2
        return Vehicle(
            c.x + chord * jnp.cos(ang), c.y + chord * jnp.sin(ang), c.yaw + turn, v1
        ), None

    car, _ = jax.lax.scan(sub, car, None, length=substeps)
    return car._replace(yaw=jnp.mod(car.yaw + jnp.pi, 2 * jnp.pi) - jnp.pi)
