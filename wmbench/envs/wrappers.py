"""Env wrappers used by :func:`wmbench.envs.make_env`.

``ActionRepeat`` is gymnasium's own :class:`gymnasium.wrappers.RepeatAction`
(gymnasium >= 1.3), which already has the semantics wmbench needs:
``ActionRepeat(env, num_repeats=k).step(a)`` steps ``env`` with ``a`` up to ``k``
times, returns the sum of the inner rewards as a Python float, and stops early at
the first inner step that is terminated or truncated, so rewards never leak across
an episode boundary. The observation, flags and info are those of the last inner
step. It raises TypeError if ``num_repeats`` is not an integer and ValueError if it
is below 1. With an older gymnasium, importing this module raises ``UsageError`` naming the fix.
"""

from importlib.metadata import version

from wmbench.errors import UsageError

try:
    from gymnasium.wrappers import RepeatAction as ActionRepeat
except ImportError:  # gymnasium < 1.3
    raise UsageError(
        "wmbench needs gymnasium >= 1.3 (for gymnasium.wrappers.RepeatAction), this environment "
        f"has gymnasium {version('gymnasium')}: pip install 'gymnasium>=1.3'"
    ) from None

__all__ = ["ActionRepeat"]
