/* `retort bench`: speed measurements of retort's engines.
 *
 *   retort bench student [--layers N --dim N --heads N --ff N --vocab N --seq N
 *                         --batch N --steps N --warmup N --bf16 --json ...]
 *   retort bench infer --model FILE [--batch N --prompt-tokens N --new-tokens N --json ...]
 *   retort bench peak [--m N --k N --n N --reps N --type f32|bf16|u8s8|all --json]
 *   retort bench data [--tokens N --vocab N --seq N --batch N --steps N --out PATH --json]
 *   retort bench teacher [--model PATH | --layers N --dim N ...] [--labels S --topk K --f32
 *                         --batch N --steps N --json ...]
 *
 * argv[0] is "bench", argv[1] the target; each target parses its own flags
 * (--help, exit 2 on unknown flags) and prints one JSON object with --json. */
#ifndef TRAINER_BENCH_H
#define TRAINER_BENCH_H

/* Entry point of `retort bench`; returns the process exit code. */
int trainer_cmd_bench(int argc, char **argv);

/* `retort bench student`: a full distillation step (forward, fused CE +
 * soft-label KL loss, backward, grad clip + AdamW) on random data.
 * argv[0] is "student". */
int trainer_bench_student(int argc, char **argv);

/* `retort bench peak`: oneDNN matmul peak of this machine per element type;
 * the other targets report their fraction of it. argv[0] is "peak". */
int trainer_bench_peak(int argc, char **argv);

/* `retort bench infer --model FILE`: prompt processing (full-window
 * forward) and KV-cache generation tokens/s of a checkpoint or deploy file
 * (f32 or int8). argv[0] is "infer". */
int trainer_bench_infer(int argc, char **argv);

/* `retort bench data`: writes a synthetic token shard through the
 * streaming writer and reads training windows from it through the sampler;
 * reports MB/s, windows/s and peak RSS (flat in the shard size). argv[0] is
 * "data". */
int trainer_bench_data(int argc, char **argv);

/* `retort bench teacher`: a teacher rank's work per micro-batch (forward,
 * then the record's soft labels in a distill.labels scheme) on a model
 * file or random weights; reports the forward / labels split of
 * teacher_stats, fraction of the matmul peak and peak RSS. argv[0] is
 * "teacher". */
int trainer_bench_teacher(int argc, char **argv);

#endif
