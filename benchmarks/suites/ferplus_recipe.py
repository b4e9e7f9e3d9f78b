"""What buys FER+ accuracy per CPU-minute: plain CE (average pooling), one change per run against the recipe."""
from benchmarks.suite import Run, Suite
from benchmarks.suites._common import FER_ROOT, FERPLUS_FILES, RECIPE, SMOKE, channels_last, epochs, eval_flip, \
    label_smoothing, precision, small_input, soft_votes, train_preset

CHANGES = {
    "recipe": [],                                   # standard stem, bf16-mixed, label smoothing 0.1, 30 epochs
    "fp32": precision("32-true"),                   # same run without bf16 autocast: time and accuracy cost of fp32
    "small_input": small_input(True),               # stem without max-pool: 3x3 final map, ~2.7x the compute
    "soft_votes": soft_votes(),                     # FER+ vote distributions as targets (the FER+ paper's best mode)
    "no_smoothing": label_smoothing(0.0),
    "epochs15": epochs(15),
    "epochs45": epochs(45),
    # soft_votes reached 83.98 % with validation still rising at epoch 30: the same with twice the epochs (~2 h here),
    # evaluated with flip averaging, which raised soft_votes_s0's best checkpoint on validation from 84.71 % to 85.53 %
    # (`ferkit validate ... --model.init_args.eval_flip true`; the test split was not used for this choice).
    # channels_last: the same function, and never slower in benchmarks/recipe_speed.py (0-15 % faster under bf16)
    "soft_votes_flip_epochs60": soft_votes() + epochs(60) + eval_flip() + channels_last(),
    # augmentation, the one lever of the list not yet measured: the vote-distribution run with the "default"
    # preset (affine: +-10 degrees, +-5 % scale, 4 px shift; brightness / contrast) instead of flip + shift only, the
    # kind of affine augmentation the FER+ paper trained with. Compared with soft_votes (one change) and the recipe.
    "soft_votes_affine": soft_votes() + train_preset("default"),
    # soft_votes_flip_epochs60 reached 85.13 %, but on validation its chosen checkpoint scores 84.78 % plain against
    # soft_votes' 84.71 %: flip averaging, not the doubled epochs, made most of its gain. The same at 30 epochs says
    # what the second half of the budget buys (benchmarks/flip_validation.py has both runs' plain and flip scores).
    "soft_votes_flip": soft_votes() + eval_flip() + channels_last(),
}
#: runs compared with more than the recipe
BASELINES = {"soft_votes_affine": ["recipe", "soft_votes"], "soft_votes_flip_epochs60": ["recipe", "soft_votes"],
             "soft_votes_flip": ["recipe", "soft_votes", "soft_votes_flip_epochs60"]}
#: the run that the packaged config ``ferplus_recipe`` reproduces: the finished run with the best validation accuracy
#: (chosen on PublicTest only; a test checks that the two resolve to the same settings)
RECIPE_RUN = "soft_votes_flip_epochs60_s0"

SUITE = Suite(
    name="ferplus_recipe",
    description="CE recipe search on the full FER+ training set at 48 px (one change per run, seed 0)",
    runs=[Run(f"{name}_s0", "avg_ferplus", seed=0, overrides=RECIPE + extra, method=name,
              baseline=None if name == "recipe" else BASELINES.get(name, "recipe")) for name, extra in CHANGES.items()],
    smoke=SMOKE,
    data_root_override=FER_ROOT,
    data_files=FERPLUS_FILES,
)
