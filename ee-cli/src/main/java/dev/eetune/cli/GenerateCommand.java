package dev.eetune.cli;

import dev.eetune.infer.GenerationConfig;
import dev.eetune.infer.GenerationResult;
import dev.eetune.infer.Generator;
import dev.eetune.model.LlamaModel;
import dev.eetune.tokenizer.Tokenizer;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;

import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.Set;
import java.util.concurrent.Callable;

/** {@code ee generate}: prints prompt + continuation to stdout (streamed for one prompt), timing to stderr. */
@Command(name = "generate", mixinStandardHelpOptions = true, description = "Generate text with a model.")
final class GenerateCommand implements Callable<Integer> {
    @Mixin
    ModelOptions opts;

    @Option(names = "--prompt", required = true, description = "Prompt text (repeat for a batch; \"\" starts from BOS alone).")
    List<String> prompts;

    @Option(names = "--max-tokens", defaultValue = "256", description = "New tokens per prompt (default: ${DEFAULT-VALUE}).")
    int maxTokens;

    @Option(names = "--temperature", defaultValue = "0", description = "0 = greedy (default).")
    float temperature;

    @Option(names = "--top-p", defaultValue = "0.9", description = "Nucleus sampling mass when temperature > 0 (default: ${DEFAULT-VALUE}).")
    float topP;

    @Option(names = "--seed", defaultValue = "42", description = "Sampling seed (default: ${DEFAULT-VALUE}).")
    long seed;

    @Override
    public Integer call() {
        PrintStream out = new PrintStream(System.out, true, StandardCharsets.UTF_8);
        try (LlamaModel model = opts.loadModel()) {
            Tokenizer tok = opts.loadTokenizer(model.config().vocabSize());
            List<int[]> ids = new ArrayList<>();
            for (String p : prompts) ids.add(tok.encode(p));
            int longest = ids.stream().mapToInt(a -> a.length).max().orElse(1);
            int maxLen = Math.min(model.config().maxSeqLen(), longest + maxTokens);
            int budget = Math.max(0, maxLen - longest);
            if (budget < maxTokens) System.err.printf(Locale.ROOT, "note: --max-tokens %d cut to %d by the model's context of %d%n", maxTokens, budget, model.config().maxSeqLen());
            GenerationConfig cfg = new GenerationConfig(budget, temperature, temperature == 0 ? 1f : topP, seed, tok.eos() >= 0 ? Set.of(tok.eos()) : Set.of());
            boolean stream = ids.size() == 1;
            try (Generator gen = new Generator(model, ids.size(), maxLen)) {
                int[] prev = new int[ids.size()];
                for (int i = 0; i < ids.size(); i++) prev[i] = ids.get(i)[ids.get(i).length - 1];
                if (stream) out.print(tok.decode(ids.get(0)));
                List<GenerationResult> results = gen.generate(ids, cfg, stream ? (s, t) -> {
                    if (t != tok.eos()) out.print(tok.decodeToken(prev[s], t));
                    prev[s] = t;
                } : null);
                if (stream) out.println();
                else for (GenerationResult r : results) out.println(tok.decode(r.tokens()));
                System.err.println(model + "\n" + gen.lastStats());
            }
        }
        return 0;
    }
}
