"""The paper's instruction-coupled kernel (its BO section; the spec's formula) as a GPyTorch kernel.

    k(z, z') = k_L(z, Z) (K_L + εI)^{-1} K_I (K_L + εI)^{-1} k_L(Z, z')

k_L is a Matérn-5/2 ARD kernel on the soft-prompt coordinates z, K_L = k_L(Z, Z) over the m evaluated
points, and K_I a Matérn-5/2 ARD kernel over the score vectors s(v_i) ∈ R^{n_dev} of the instructions
those points produced. On the evaluated points the kernel reproduces the instruction similarity K_I
(up to ε); elsewhere it extrapolates that similarity through the latent kernel. Both kernels' length
scales are hyperparameters fitted by the marginal likelihood (with the official Gamma(3, 6) priors).
"""

from __future__ import annotations

from typing import Any

import torch
from gpytorch.kernels import Kernel, MaternKernel
from gpytorch.priors import GammaPrior


def matern(dims: int) -> MaternKernel:
    """Matérn-5/2 with one length scale per dimension and the official Gamma(3, 6) prior."""
    return MaternKernel(nu=2.5, ard_num_dims=dims, lengthscale_prior=GammaPrior(3.0, 6.0))


class InstructionCoupledKernel(Kernel):
    def __init__(
        self,
        latent_train: torch.Tensor,
        instruction_train: torch.Tensor,
        jitter: float = 1e-4,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.latent_kernel = matern(latent_train.shape[-1])
        self.instruction_kernel = matern(instruction_train.shape[-1])
        self.register_buffer("latent_train", latent_train)
        self.register_buffer("instruction_train", instruction_train)
        self.jitter = jitter

    def coupling(self) -> torch.Tensor:
        """M = (K_L + εI)^{-1} K_I (K_L + εI)^{-1}, so that k(z, z') = k_L(z, Z) M k_L(Z, z')."""
        Z, S = self.latent_train, self.instruction_train
        K_L = self.latent_kernel(Z, Z).to_dense()
        K_L = K_L + self.jitter * torch.eye(len(Z), dtype=K_L.dtype, device=K_L.device)
        K_I = self.instruction_kernel(S, S).to_dense()
        # Solves instead of the official explicit inverse: the same matrix, better conditioned.
        chol = torch.linalg.cholesky(K_L)
        left = torch.cholesky_solve(K_I, chol)  # K_L^{-1} K_I
        return torch.cholesky_solve(left.transpose(-1, -2), chol).transpose(-1, -2)  # … K_L^{-1}

    def forward(self, x1: torch.Tensor, x2: torch.Tensor, diag: bool = False, **params: Any) -> torch.Tensor:
        Z = self.latent_train
        k1 = self.latent_kernel(x1, Z).to_dense()  # (..., n1, m)
        k2 = self.latent_kernel(x2, Z).to_dense()  # (..., n2, m)
        M = self.coupling()
        if diag:
            return ((k1 @ M) * k2).sum(-1)
        return k1 @ M @ k2.transpose(-1, -2)
