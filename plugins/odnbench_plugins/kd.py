"""The ``kd`` control: is ODN's shallow model limited by its depth or by its training? The network
ODN chose (stem + blocks 1..k + a head; k from the odn result or set by hand, the rule of
``scratch``) trained with knowledge distillation (Hinton et al. 2015) from the trained full-depth
model:

    loss = weight × T² × KL(softmax(teacher / T) ‖ softmax(student / T)) + (1 − weight) × CE(student, y)

The student starts from random weights (``init=scratch``, the same initial weights as the
``scratch`` control) or from the trained full model's first k blocks (``init=full``, as
``truncate``). The teacher's forward passes are part of the cost: the harness counts the full
model's training (a dependency), and every training image the teacher labels is counted as a
forward-only pass (three of them make one sample-step; their wall time is inside the distillation
epochs).
"""

from __future__ import annotations

from odnbench import Method, MethodOutput, Param, Requirement, hookimpl
from odnbench_plugins.depth_rule import DEPTH_PARAM, chosen_depth, depth_requirements


class KnowledgeDistillation(Method):
    name = "kd"
    description = "ODN's depth k trained with knowledge distillation from the trained full-depth model"
    params = (
        DEPTH_PARAM,
        Param("temperature", float, 4.0, gt=0, help="Softmax temperature T of the teacher's and student's logits."),
        Param("weight", float, 0.9, ge=0, le=1,
              help="Weight of the distillation term (x T^2); 1 - weight goes to cross-entropy on the labels."),
        Param("init", str, "scratch", choices=("scratch", "full"),
              help="Student start: scratch (random, as the scratch control) or full (the trained full model's stem "
                   "and first k blocks, a fresh head, as truncate)."),
    )

    def requires(self, params):  # ranges are declared on the Params
        return [Requirement("full"), *depth_requirements(params)]

    def run(self, ctx):
        import torch
        import torch.nn.functional as F

        p = ctx.params
        teacher = ctx.start_from("full").eval()  # BatchNorm statistics frozen: the teacher only labels
        for param in teacher.parameters():
            param.requires_grad_(False)
        k, source = chosen_depth(ctx, teacher.depth)
        val_teacher = ctx.trainer.evaluate(teacher, "val")
        student = (teacher.truncated(k) if p["init"] == "full" else ctx.build_backbone().truncated(k)).to(ctx.device)
        for param in student.parameters():
            param.requires_grad_(True)
        T, weight = p["temperature"], p["weight"]
        labelled = [0]

        def distillation(model, x, y):
            with torch.no_grad():
                soft_targets = F.log_softmax(teacher(x) / T, dim=1)
            labelled[0] += len(y)
            logits = model(x)
            kl = F.kl_div(F.log_softmax(logits / T, dim=1), soft_targets, reduction="batchmean", log_target=True)
            return weight * T * T * kl + (1.0 - weight) * F.cross_entropy(logits, y)

        from odnbench.errors import DivergedError

        try:
            fit = ctx.trainer.fit(student, label="distillation", loss_fn=distillation)
        except DivergedError as exc:  # the trainer's hint names recipe.lr; here the temperature is the usual cause
            raise DivergedError(f"{exc}. In kd the likelier knob is kd.temperature={T:g}: the softened logits are "
                                f"divided by it (a small T overflows them) and the T² × KL term scales the gradient "
                                f"by T (a large T acts like a larger learning rate); try 1 <= kd.temperature <= 10, "
                                f"or a lower kd.weight={weight:g}") from None
        ctx.cost.add_forward("teacher forward", labelled[0], macs=ctx.trainer.forward_macs(teacher))
        return MethodOutput(student, {
            "depth_source": source, "init": p["init"], "temperature": T, "weight": weight,
            "teacher_val": val_teacher, "teacher_forward_samples": labelled[0], **fit.summary(),
        }, depth=k)


@hookimpl
def register_methods(register):
    register(KnowledgeDistillation())
