"""Environments: the softmax bandit (registered as ``SoftmaxBandit-v0`` on import) and vector-env making."""

from gymnasium.envs.registration import register, registry

from envs.bandit import SoftmaxBanditEnv

if "SoftmaxBandit-v0" not in registry:
    register(id="SoftmaxBandit-v0", entry_point="envs.bandit:SoftmaxBanditEnv")

__all__ = ["SoftmaxBanditEnv"]
