// llama.cpp (through node-llama-cpp) reading retort's GGUF files: used by
// tests/cli_gguf.sh, and by tests/bench/bench_gguf.sh for speed.
//
//   node gguf_llama.mjs PKG_DIR check FILE.gguf RETORT.json PROMPT
//     Loads FILE (CPU, prebuilt binaries only), and compares with
//     `retort generate --json --temperature 0` (RETORT.json): the prompt's
//     tokens; the greedy continuation, generated here token by token; and,
//     teacher-forced on retort's continuation, the log-probability of each
//     of retort's tokens and whether it is llama.cpp's top-1. Prints one
//     JSON line: tokenize_equal, greedy_equal, max_abs_logprob_diff,
//     top1_agreement, n.
//   node gguf_llama.mjs PKG_DIR speed FILE.gguf PROMPT_TOKENS N
//     Greedy-generates N tokens after a prompt of PROMPT_TOKENS ids and
//     prints one JSON line with llama.cpp's tokens/s for the generation
//     alone (node-llama-cpp's per-token overhead included).
//
// The context is twice the model's n_positions: node-llama-cpp shifts the
// context of a sequence that reaches its size, and retort's windows never
// go past n_positions anyway.
import fs from "node:fs";
import path from "node:path";
import {pathToFileURL} from "node:url";

const [pkgDir, mode, file, ...rest] = process.argv.slice(2);
const {getLlama, LlamaLogLevel} = await import(pathToFileURL(path.join(pkgDir, "dist/index.js")).href);
const llama = await getLlama({gpu: false, build: "never", logLevel: LlamaLogLevel.error});
const model = await llama.loadModel({modelPath: file});
// threads: $LLAMA_THREADS, default 1 (llama.cpp's threads spin, which on a
// shared machine slows everything down)
const threads = Number(process.env.LLAMA_THREADS || 1);
const context = await model.createContext({contextSize: 2 * model.trainContextSize, sequences: 1,
                                           threads});
const seq = context.getSequence();

// Feeds `tokens` to the sequence (after what it holds) and returns
// llama.cpp's greedy next token.
async function greedyAfter(tokens) {
    const input = tokens.map((t, i) =>
        i === tokens.length - 1 ? [t, {generateNext: {token: true, options: {temperature: 0}}}] : t);
    const out = await seq.controlledEvaluate(input);
    return out[out.length - 1].next.token;
}

if (mode === "check") {
    const [jsonFile, prompt] = rest;
    const ref = JSON.parse(fs.readFileSync(jsonFile, "utf8"));
    const toks = Array.from(model.tokenize(prompt));
    const tokenizeEqual = JSON.stringify(toks) === JSON.stringify(ref.prompt_ids);
    // teacher-forced on retort's sequence: one evaluation, a probability table per position
    await seq.clearHistory();
    const all = ref.prompt_ids.concat(ref.ids);
    const input = all.map((t, i) =>
        i >= ref.prompt_ids.length - 1 && i < all.length - 1
            ? [t, {generateNext: {probabilities: true}}] : t);
    const out = await seq.controlledEvaluate(input);
    let maxDiff = 0, agree = 0;
    for (let k = 0; k < ref.ids.length; k++) {
        const probs = out[ref.prompt_ids.length - 1 + k].next.probabilities;
        const p = probs.get(ref.ids[k]) ?? 0;
        maxDiff = Math.max(maxDiff, Math.abs(Math.log(p) - ref.logprobs[k]));
        if (probs.entries().next().value[0] === ref.ids[k]) agree++;
    }
    // free-running greedy continuation, as long as retort's, one token per evaluation
    await seq.clearHistory();
    const gen = [await greedyAfter(ref.prompt_ids)];
    while (gen.length < ref.ids.length) gen.push(await greedyAfter([gen[gen.length - 1]]));
    const greedyEqual = JSON.stringify(gen) === JSON.stringify(ref.ids);
    console.log(JSON.stringify({file: path.basename(file), tokenize_equal: tokenizeEqual,
        greedy_equal: greedyEqual, max_abs_logprob_diff: maxDiff,
        top1_agreement: agree / ref.ids.length, n: ref.ids.length,
        llama_tokens: tokenizeEqual ? undefined : toks, llama_greedy: greedyEqual ? undefined : gen}));
} else if (mode === "speed") {
    // PROMPT_TOKENS ids (i * 7919 mod vocab), then NEW_TOKENS greedy ones;
    // the clock runs from the first generated token to the last (decoding
    // alone, as `retort bench infer` reports gen_tokens_per_s)
    const [pText, nText] = rest;
    const nPrompt = Number(pText), n = Number(nText);
    const V = Number(model.fileInfo.metadata.tokenizer.ggml.tokens.length);
    const toks = Array.from({length: nPrompt}, (_, i) => (i * 7919) % V);
    let t0 = 0, made = 0;
    for await (const token of seq.evaluate(toks, {temperature: 0})) {
        if (made === 0) t0 = performance.now();
        if (++made > n) break;
    }
    const secs = (performance.now() - t0) / 1000;
    console.log(JSON.stringify({file: path.basename(file), threads, prompt_tokens: nPrompt,
                                gen_tokens: n, seconds: secs, gen_tokens_per_s: n / secs}));
} else {
    console.error("usage: gguf_llama.mjs PKG_DIR check|speed FILE ...");
    process.exit(2);
}
await context.dispose();
await model.dispose();
await llama.dispose();
