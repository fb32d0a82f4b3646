"""Train, evaluate, save, load, predict and export PPO from Python: ``python examples/quickstart.py [steps]``."""

import sys

import gymnasium as gym

from agents import PPO

steps = int(sys.argv[1]) if len(sys.argv) > 1 else None          # None: the tuned budget (100k steps)
model = PPO.tuned("cartpole", seed=0)                              # conf/tuned/cartpole.yaml; kwargs override it
model.learn(steps, logdir="runs/quickstart")                       # TensorBoard: tensorboard --logdir runs
print("evaluation:", model.evaluate(episodes=20).mean)
model.save("runs/quickstart.pt")

model = PPO.load("runs/quickstart.pt")                             # also reads any Hydra run's checkpoint
env = gym.make("CartPole-v1")
obs, _ = env.reset(seed=1)
episode_return, done = 0.0, False
while not done:
    obs, reward, terminated, truncated, _ = env.step(model.predict(obs))
    episode_return += reward
    done = terminated or truncated
print("one episode with predict:", episode_return)
print("exported:", model.export("runs/quickstart.pt2"))          # torch.export.load(...).module()(obs)
