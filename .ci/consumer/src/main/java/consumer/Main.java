package consumer;

import dev.eetune.backend.Backend;
import dev.eetune.backend.Backends;
import dev.eetune.infer.GenerationConfig;
import dev.eetune.infer.GenerationResult;
import dev.eetune.infer.Generator;
import dev.eetune.model.LlamaConfig;
import dev.eetune.model.LlamaModel;
import dev.eetune.tokenizer.ByteTokenizer;

import java.util.List;
import java.util.Set;

/** Greedy generation with a small random Llama on the CPU backend; prints what .ci/consumer-check.sh checks. */
public final class Main {
    public static void main(String[] args) {
        Backend cpu = Backends.cpu();
        var tok = new ByteTokenizer();
        var config = new LlamaConfig(32, 96, 2, 4, 2, 8, tok.vocabSize(), 64, 1e-5f, 10000f, null, false, false, false, LlamaConfig.LLAMA).validate();
        try (LlamaModel model = LlamaModel.random(config, cpu, 7, 0.3f); Generator gen = new Generator(model, 1, 64)) {
            List<GenerationResult> out = gen.generate(List.of(tok.encode("hello")), GenerationConfig.greedy(8, Set.of()), null);
            System.out.println("backend: " + cpu.describe());
            System.out.println("api module: " + named(Backend.class.getModule()) + ", backend module: " + named(cpu.getClass().getModule()));
            System.out.println("generated " + out.get(0).generated().length + " tokens");
        }
    }

    private static String named(Module m) { return m.isNamed() ? m.getName() : "unnamed"; }
}
