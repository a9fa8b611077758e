"""Your own problem for the command line: a function returning model, optimizer, data and loss.

    lrkit find examples/my_recipe.py:make --plot finder.png
    lrkit recommend examples/my_recipe.py:make --steps 600 --code
    lrkit sweep examples/my_recipe.py:make --budget 300

The data is scikit-learn's bundled wine dataset (nothing is downloaded). ``seed`` makes every
call a fresh, reproducible model, so sweeps and recommend's confirmation runs start alike.
"""
from __future__ import annotations

import torch
from sklearn.datasets import load_wine
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

import lrkit


def make(seed: int = 0) -> lrkit.Problem:
    x, y = load_wine(return_X_y=True)
    x_train, x_val, y_train, y_val = train_test_split(x, y, test_size=0.3, random_state=0,
                                                      stratify=y)
    scaler = StandardScaler().fit(x_train)
    as_set = lambda a, b: torch.utils.data.TensorDataset(  # noqa: E731
        torch.tensor(scaler.transform(a), dtype=torch.float32), torch.tensor(b))
    generator = torch.Generator().manual_seed(seed)
    train = torch.utils.data.DataLoader(as_set(x_train, y_train), batch_size=16, shuffle=True,
                                        generator=generator)
    val = torch.utils.data.DataLoader(as_set(x_val, y_val), batch_size=64)
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(13, 32), torch.nn.ReLU(), torch.nn.Linear(32, 3))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)
    return lrkit.Problem(model=model, optimizer=optimizer, train_loader=train,
                         criterion=torch.nn.CrossEntropyLoss(), val_loader=val, name="wine-mlp",
                         budget_steps=600)


if __name__ == "__main__":
    problem = make()
    result = lrkit.find_lr(problem.model, problem.optimizer, problem.train_loader,
                           problem.criterion, budget_steps=problem.budget_steps)
    print(result)
