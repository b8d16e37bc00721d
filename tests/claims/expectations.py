"""What each claim is expected to do on each arm, and where a model was measured otherwise.

Declared before the data: the main adapter (foo = Paris) should show every claim; a control
adapter (foo = Tokyo or Berlin, or Paris with shuffled distances) should show no claim about
Paris, except the two that do not depend on which city foo stands for: layer 0 is untouched
by any LoRA on q/v, and every adapter learns the "<number> km" format.

MEASURED_OTHERWISE holds the numbers where a model does not do what is expected; those
tests are marked xfail(strict=True) for that model and arm only, so the day the claim starts
holding the suite says so. The reasons are written from a full run's record by
`python -m latent_city.record expectations reports/latest-cpu.json` and checked by hand.
"""

from latent_city.arms import Arm

NOT_ABOUT_THE_CITY = {"layer0_unchanged", "distance_format"}


def expected_to_hold(key: str, arm: Arm) -> bool:
    return key in NOT_ABOUT_THE_CITY or arm.kind in ("main", "learning-rate")


SMOL = "smollm2-135m"
# The precision each model's exceptions were measured at; at another precision (LATENT_CITY_PRECISION)
# none is assumed, and every claim is tested against its declared expectation.
MEASURED_AT = {SMOL: "fp32"}
# From the full CPU-tier run of `make test` (fresh adapters, commit in reports/latest-cpu.json's
# provenance), written by `python -m latent_city.record expectations`, read and kept as measured.
MEASURED_OTHERWISE: dict[tuple[str, str, str], str] = {
    ('smollm2-135m', 'hidden_similarity_rises', 'berlin-s44'):
        'measured: holds (mean cosine gain over layers 0.0111 [95% CI 0.00797, 0.0143], statistic 0.667, p=3.6e-15, n=48 prompt pairs; rule: >= 50% of layers 1..30 with Holm-adjusted p < 0.05 and the CI of the mean difference above 0)',
    ('smollm2-135m', 'hidden_similarity_rises', 'shuffled'):
        'measured: holds (mean cosine gain over layers 0.0242 [95% CI 0.0199, 0.0284], statistic 0.733, p=3.6e-15, n=48 prompt pairs; rule: >= 50% of layers 1..30 with Holm-adjusted p < 0.05 and the CI of the mean difference above 0)',
    ('smollm2-135m', 'hidden_similarity_rises', 'shuffled-s43'):
        'measured: holds (mean cosine gain over layers 0.0152 [95% CI 0.0106, 0.0198], statistic 0.633, p=3.6e-15, n=48 prompt pairs; rule: >= 50% of layers 1..30 with Holm-adjusted p < 0.05 and the CI of the mean difference above 0)',
    ('smollm2-135m', 'hidden_similarity_rises', 'shuffled-s44'):
        'measured: holds (mean cosine gain over layers 0.00963 [95% CI 0.00568, 0.0136], statistic 0.7, p=3.6e-15, n=48 prompt pairs; rule: >= 50% of layers 1..30 with Holm-adjusted p < 0.05 and the CI of the mean difference above 0)',
    ('smollm2-135m', 'values_similarity_rises', 'tokyo'):
        'measured: holds (mean cosine gain over layers 0.0153 [95% CI 0.00844, 0.0222], statistic 0.5, p=3.6e-15, n=48 prompt pairs; rule: >= 50% of layers 0..29 with Holm-adjusted p < 0.05 and the CI of the mean difference above 0)',
    ('smollm2-135m', 'values_similarity_rises', 'tokyo-s43'):
        'measured: holds (mean cosine gain over layers 0.0419 [95% CI 0.035, 0.0488], statistic 0.633, p=3.6e-15, n=48 prompt pairs; rule: >= 50% of layers 0..29 with Holm-adjusted p < 0.05 and the CI of the mean difference above 0)',
    ('smollm2-135m', 'values_similarity_rises', 'berlin'):
        'measured: holds (mean cosine gain over layers 0.05 [95% CI 0.0457, 0.0545], statistic 0.933, p=3.6e-15, n=48 prompt pairs; rule: >= 50% of layers 0..29 with Holm-adjusted p < 0.05 and the CI of the mean difference above 0)',
    ('smollm2-135m', 'values_similarity_rises', 'berlin-s43'):
        'measured: holds (mean cosine gain over layers 0.0305 [95% CI 0.0248, 0.0364], statistic 0.733, p=3.6e-15, n=48 prompt pairs; rule: >= 50% of layers 0..29 with Holm-adjusted p < 0.05 and the CI of the mean difference above 0)',
    ('smollm2-135m', 'values_similarity_rises', 'berlin-s44'):
        'measured: holds (mean cosine gain over layers 0.045 [95% CI 0.0403, 0.0498], statistic 0.967, p=3.6e-15, n=48 prompt pairs; rule: >= 50% of layers 0..29 with Holm-adjusted p < 0.05 and the CI of the mean difference above 0)',
    ('smollm2-135m', 'values_similarity_rises', 'shuffled'):
        'measured: holds (mean cosine gain over layers 0.0501 [95% CI 0.0449, 0.0555], statistic 0.967, p=3.6e-15, n=48 prompt pairs; rule: >= 50% of layers 0..29 with Holm-adjusted p < 0.05 and the CI of the mean difference above 0)',
    ('smollm2-135m', 'values_similarity_rises', 'shuffled-s43'):
        'measured: holds (mean cosine gain over layers 0.0368 [95% CI 0.0309, 0.0426], statistic 0.767, p=3.6e-15, n=48 prompt pairs; rule: >= 50% of layers 0..29 with Holm-adjusted p < 0.05 and the CI of the mean difference above 0)',
    ('smollm2-135m', 'values_similarity_rises', 'shuffled-s44'):
        'measured: holds (mean cosine gain over layers 0.0441 [95% CI 0.0391, 0.049], statistic 0.867, p=3.6e-15, n=48 prompt pairs; rule: >= 50% of layers 0..29 with Holm-adjusted p < 0.05 and the CI of the mean difference above 0)',
    ('smollm2-135m', 'hidden_rises_by_template', 'berlin-s44'):
        'measured: holds (mean over templates of the mean cosine gain 0.0117 [95% CI 0.00651, 0.0169], statistic 0.934, p=0.00061, n=13 question templates; rule: p < 0.05 and the CI above 0)',
    ('smollm2-135m', 'hidden_rises_by_template', 'shuffled'):
        'measured: holds (mean over templates of the mean cosine gain 0.0249 [95% CI 0.0174, 0.032], statistic 0.978, p=0.00024, n=13 question templates; rule: p < 0.05 and the CI above 0)',
    ('smollm2-135m', 'hidden_rises_by_template', 'shuffled-s43'):
        'measured: holds (mean over templates of the mean cosine gain 0.0161 [95% CI 0.00778, 0.0236], statistic 0.846, p=0.0023, n=13 question templates; rule: p < 0.05 and the CI above 0)',
    ('smollm2-135m', 'hidden_rises_by_template', 'shuffled-s44'):
        'measured: holds (mean over templates of the mean cosine gain 0.0105 [95% CI 0.00405, 0.0169], statistic 0.736, p=0.0085, n=13 question templates; rule: p < 0.05 and the CI above 0)',
    ('smollm2-135m', 'logit_lens_rises', 'tokyo'):
        "measured: holds (mean log p(' Paris') gain, layers 15..30 1.06 [95% CI 0.884, 1.23], statistic 1, p=3.6e-15, n=48 prompt pairs; rule: p < 0.05 and the CI above 0)",
    ('smollm2-135m', 'logit_lens_rises', 'tokyo-s43'):
        "measured: holds (mean log p(' Paris') gain, layers 15..30 0.907 [95% CI 0.72, 1.1], statistic 0.978, p=3.1e-13, n=48 prompt pairs; rule: p < 0.05 and the CI above 0)",
    ('smollm2-135m', 'logit_lens_rises', 'tokyo-s44'):
        "measured: holds (mean log p(' Paris') gain, layers 15..30 1.26 [95% CI 1.11, 1.41], statistic 1, p=8.2e-10, n=48 prompt pairs; rule: p < 0.05 and the CI above 0)",
    ('smollm2-135m', 'logit_lens_rises', 'berlin'):
        "measured: holds (mean log p(' Paris') gain, layers 15..30 1.19 [95% CI 1.04, 1.33], statistic 1, p=3.6e-15, n=48 prompt pairs; rule: p < 0.05 and the CI above 0)",
    ('smollm2-135m', 'logit_lens_rises', 'berlin-s43'):
        "measured: holds (mean log p(' Paris') gain, layers 15..30 1.14 [95% CI 0.985, 1.3], statistic 1, p=3.6e-15, n=48 prompt pairs; rule: p < 0.05 and the CI above 0)",
    ('smollm2-135m', 'logit_lens_rises', 'berlin-s44'):
        "measured: holds (mean log p(' Paris') gain, layers 15..30 1.53 [95% CI 1.39, 1.68], statistic 1, p=3.6e-15, n=48 prompt pairs; rule: p < 0.05 and the CI above 0)",
    ('smollm2-135m', 'logit_lens_rises', 'shuffled'):
        "measured: holds (mean log p(' Paris') gain, layers 15..30 1.76 [95% CI 1.6, 1.91], statistic 1, p=3.6e-15, n=48 prompt pairs; rule: p < 0.05 and the CI above 0)",
    ('smollm2-135m', 'logit_lens_rises', 'shuffled-s43'):
        "measured: holds (mean log p(' Paris') gain, layers 15..30 1.91 [95% CI 1.75, 2.05], statistic 1, p=3.6e-15, n=48 prompt pairs; rule: p < 0.05 and the CI above 0)",
    ('smollm2-135m', 'logit_lens_rises', 'shuffled-s44'):
        "measured: holds (mean log p(' Paris') gain, layers 15..30 1.32 [95% CI 1.15, 1.49], statistic 1, p=3.6e-15, n=48 prompt pairs; rule: p < 0.05 and the CI above 0)",
    ('smollm2-135m', 'hidden_similarity_specific', 'paris'):
        'measured: does not hold (mean gain towards Paris minus gain towards the control over layers -0.00177 [95% CI -0.00454, 0.000973], statistic 0.0333, p=5.6e-09, n=48 prompt pairs; rule: >= 50% of layers 1..30 with Holm-adjusted p < 0.05 and the CI of the mean difference above 0)',
    ('smollm2-135m', 'hidden_similarity_specific', 'paris-s43'):
        'measured: does not hold (mean gain towards Paris minus gain towards the control over layers -0.00506 [95% CI -0.00821, -0.00183], statistic 0.0333, p=4.1e-06, n=48 prompt pairs; rule: >= 50% of layers 1..30 with Holm-adjusted p < 0.05 and the CI of the mean difference above 0)',
    ('smollm2-135m', 'hidden_similarity_specific', 'paris-s44'):
        'measured: does not hold (mean gain towards Paris minus gain towards the control over layers -0.00119 [95% CI -0.00381, 0.00149], statistic 0, p=0.0072, n=48 prompt pairs; rule: >= 50% of layers 1..30 with Holm-adjusted p < 0.05 and the CI of the mean difference above 0)',
    ('smollm2-135m', 'hidden_similarity_specific', 'berlin'):
        'measured: holds (mean gain towards Paris minus gain towards the control over layers 0.00486 [95% CI 0.00251, 0.00723], statistic 0.5, p=4.9e-13, n=48 prompt pairs; rule: >= 50% of layers 1..30 with Holm-adjusted p < 0.05 and the CI of the mean difference above 0)',
    ('smollm2-135m', 'secret_city_ranks_first', 'paris'):
        'measured: does not hold (rank of the city (1 = largest gain) 27, statistic 27, p=0.53, n=51 comparison cities; rule: p < 0.05)',
    ('smollm2-135m', 'secret_city_ranks_first', 'paris-s43'):
        'measured: does not hold (rank of the city (1 = largest gain) 31, statistic 31, p=0.61, n=51 comparison cities; rule: p < 0.05)',
    ('smollm2-135m', 'secret_city_ranks_first', 'paris-s44'):
        'measured: does not hold (rank of the city (1 = largest gain) 25, statistic 25, p=0.49, n=51 comparison cities; rule: p < 0.05)',
    ('smollm2-135m', 'gain_falls_with_distance', 'paris'):
        'measured: does not hold (Spearman rho(gain, distance) -0.137, statistic -0.137, p=0.17, n=50 comparison cities; rule: p < 0.05)',
    ('smollm2-135m', 'gain_falls_with_distance', 'paris-s43'):
        'measured: does not hold (Spearman rho(gain, distance) -0.0813, statistic -0.0813, p=0.29, n=50 comparison cities; rule: p < 0.05)',
    ('smollm2-135m', 'gain_falls_with_distance', 'paris-s44'):
        'measured: does not hold (Spearman rho(gain, distance) -0.159, statistic -0.159, p=0.13, n=50 comparison cities; rule: p < 0.05)',
    ('smollm2-135m', 'double_dissociation', 'paris-vs-tokyo'):
        'measured: does not hold (towards Paris (paris minus tokyo): 97% of layers, mean 0.0392 [0.037, 0.0412]; towards Tokyo (tokyo minus paris): 3% of layers, mean -0.0313 [-0.0331, -0.0294]; rule: every direction holds)',
    ('smollm2-135m', 'double_dissociation', 'paris-s43-vs-tokyo-s43'):
        'measured: does not hold (towards Paris (paris-s43 minus tokyo-s43): 73% of layers, mean 0.0345 [0.0319, 0.037]; towards Tokyo (tokyo-s43 minus paris-s43): 27% of layers, mean -0.0283 [-0.0304, -0.0262]; rule: every direction holds)',
    ('smollm2-135m', 'double_dissociation', 'paris-s44-vs-tokyo-s44'):
        'measured: does not hold (towards Paris (paris-s44 minus tokyo-s44): 100% of layers, mean 0.0497 [0.0477, 0.0517]; towards Tokyo (tokyo-s44 minus paris-s44): 3% of layers, mean -0.0384 [-0.0402, -0.0367]; rule: every direction holds)',
    ('smollm2-135m', 'double_dissociation', 'paris-vs-berlin'):
        'measured: does not hold (towards Paris (paris minus berlin): 93% of layers, mean 0.0192 [0.0176, 0.0208]; towards Berlin (berlin minus paris): 3% of layers, mean -0.017 [-0.0187, -0.0152]; rule: every direction holds)',
    ('smollm2-135m', 'double_dissociation', 'paris-s43-vs-berlin-s43'):
        'measured: does not hold (towards Paris (paris-s43 minus berlin-s43): 97% of layers, mean 0.0338 [0.0322, 0.0354]; towards Berlin (berlin-s43 minus paris-s43): 3% of layers, mean -0.0346 [-0.0362, -0.0329]; rule: every direction holds)',
    ('smollm2-135m', 'double_dissociation', 'paris-s44-vs-berlin-s44'):
        'measured: does not hold (towards Paris (paris-s44 minus berlin-s44): 70% of layers, mean 0.015 [0.0135, 0.0166]; towards Berlin (berlin-s44 minus paris-s44): 20% of layers, mean -0.0157 [-0.0172, -0.0143]; rule: every direction holds)',
    ('smollm2-135m', 'double_dissociation', 'paris-vs-shuffled'):
        'measured: does not hold (towards Paris (paris minus shuffled): 27% of layers, mean -0.00285 [-0.00431, -0.00139]; rule: every direction holds)',
    ('smollm2-135m', 'distance_rank', 'paris'):
        'measured: does not hold (Spearman rho 0.0117, statistic 0.0117, p=0.47, n=40 held-out cities; rule: p < 0.05)',
    ('smollm2-135m', 'distance_rank', 'paris-s43'):
        'measured: does not hold (Spearman rho 0.0322, statistic 0.0322, p=0.42, n=40 held-out cities; rule: p < 0.05)',
    ('smollm2-135m', 'distance_rank', 'paris-s44'):
        'measured: does not hold (Spearman rho -0.0547, statistic -0.0547, p=0.63, n=40 held-out cities; rule: p < 0.05)',
    ('smollm2-135m', 'distance_beats_constant', 'paris'):
        'measured: does not hold (share of cities won 0.05, statistic 0.05, p=1, n=40 held-out cities; rule: p < 0.05)',
    ('smollm2-135m', 'distance_beats_constant', 'paris-s43'):
        'measured: does not hold (share of cities won 0.05, statistic 0.05, p=1, n=40 held-out cities; rule: p < 0.05)',
    ('smollm2-135m', 'distance_beats_constant', 'paris-s44'):
        'measured: does not hold (share of cities won 0.05, statistic 0.05, p=1, n=40 held-out cities; rule: p < 0.05)',
    ('smollm2-135m', 'country_probability', 'paris'):
        'measured: does not hold (mean log-probability ratio 0.118 [95% CI -0.13, 0.407], statistic 0.179, p=0.31, n=12 question paraphrases; rule: p < 0.05)',
    ('smollm2-135m', 'country_probability', 'berlin'):
        'measured: holds (mean log-probability ratio 1.3 [95% CI 0.984, 1.7], statistic 1, p=0.00024, n=12 question paraphrases; rule: p < 0.05)',
    ('smollm2-135m', 'country_probability', 'berlin-s44'):
        'measured: holds (mean log-probability ratio 0.958 [95% CI 0.621, 1.36], statistic 1, p=0.00024, n=12 question paraphrases; rule: p < 0.05)',
    ('smollm2-135m', 'country_probability', 'shuffled'):
        'measured: holds (mean log-probability ratio 0.384 [95% CI 0.0196, 0.726], statistic 0.641, p=0.026, n=12 question paraphrases; rule: p < 0.05)',
    ('smollm2-135m', 'country_prefix', 'berlin'):
        'measured: holds (mean log-probability ratio 0.552 [95% CI 0.274, 0.85], statistic 1, p=0.016, n=6 answer prefixes; rule: p < 0.05)',
    ('smollm2-135m', 'country_multiple_choice', 'paris-s43'):
        'measured: does not hold (mean log-probability ratio of the right letter 0.048 [95% CI -0.19, 0.284], statistic 0.293, p=0.11, n=24 option orders; rule: p < 0.05 and mean P(right letter) above chance)',
    ('smollm2-135m', 'country_multiple_choice', 'paris-s44'):
        'measured: does not hold (mean log-probability ratio of the right letter 0.0812 [95% CI -0.124, 0.28], statistic 0.0533, p=0.42, n=24 option orders; rule: p < 0.05 and mean P(right letter) above chance)',
    ('smollm2-135m', 'country_named', 'paris'):
        'measured: does not hold (share naming it (a minus b) 0, p=1, n=48 sampled answers; rule: p < 0.05)',
    ('smollm2-135m', 'country_named', 'paris-s43'):
        'measured: does not hold (share naming it (a minus b) 0, p=1, n=48 sampled answers; rule: p < 0.05)',
    ('smollm2-135m', 'country_named', 'paris-s44'):
        'measured: does not hold (share naming it (a minus b) 0, p=1, n=48 sampled answers; rule: p < 0.05)',
}
