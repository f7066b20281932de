// What self-speculative decoding costs against plain decode on one model, warm, in one JVM (docs/self-speculation.md,
// "6. Speed"): rounds of the two decoders alternated, each decoding the same 4 prompts x N tokens at batch 1, one
// thread; per round the µs per generated token of each, and the last call's drafting statistics.
// A plain Java program on the `ee` jar (the same FFM binding `ee` uses):
//   java --enable-native-access=ALL-UNNAMED -cp ee-cli/target/ee.jar -Dmodel=M -Dtokenizer=T -Dheads=DIR \
//        [-Dexit=1] [-Ddraft=4] [-Dtokens=128] [-Drounds=6] bench/SpeculativeSpeed.java
// heads: a folder with heads.safetensors (`ee tune --out`); exit: the drafting exit layer; draft: drafts per round.
import dev.eetune.backend.Backend;
import dev.eetune.backend.Backends;
import dev.eetune.exit.EarlyExitModel;
import dev.eetune.infer.Decoder;
import dev.eetune.infer.EarlyExitGenerator;
import dev.eetune.infer.EarlyExitPolicy;
import dev.eetune.infer.GenerationConfig;
import dev.eetune.infer.SelfSpeculativeDecoder;
import dev.eetune.model.LlamaModel;
import dev.eetune.tokenizer.Tokenizer;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.Set;

public class SpeculativeSpeed {
    public static void main(String[] args) {
        Locale.setDefault(Locale.ROOT);
        Backend be = Backends.cpu();
        be.setThreads(1);
        LlamaModel model = LlamaModel.load(Path.of(System.getProperty("model")), be);
        Tokenizer tok = Tokenizer.load(Path.of(System.getProperty("tokenizer")));
        EarlyExitModel exits = EarlyExitModel.load(model, Path.of(System.getProperty("heads")).resolve("heads.safetensors"));
        GenerationConfig cfg = GenerationConfig.greedy(Integer.getInteger("tokens", 128), Set.of());
        List<int[]> prompts = new ArrayList<>();
        for (String p : "Once upon a time|The little dog|Tom and Lily went|One day, a girl".split("[|]")) prompts.add(tok.encode(p));
        int rounds = Integer.getInteger("rounds", 6);
        try (EarlyExitGenerator plain = new EarlyExitGenerator(model, null, EarlyExitPolicy.none(), 1, model.config().maxSeqLen());
             SelfSpeculativeDecoder spec = new SelfSpeculativeDecoder(exits, Integer.getInteger("exit", 1), Integer.getInteger("draft", 4), false, 0f, 1,
                 model.config().maxSeqLen())) {
            System.out.printf("%-6s %14s %14s %8s  %s%n", "round", "plain us/tok", "spec us/tok", "spec x", "speculative, last call");
            for (int r = -2; r < rounds; r++) { // two warm-up rounds: the JIT compiles both loops
                double p = usPerToken(plain, prompts, cfg), s = usPerToken(spec, prompts, cfg);
                if (r >= 0) System.out.printf("%-6d %14.1f %14.1f %7.2fx  %s%n", r, p, s, p / s, spec.lastStats());
            }
        }
        model.close();
    }

    /** µs per generated token of 20 passes over the prompts, one at a time. */
    static double usPerToken(Decoder d, List<int[]> prompts, GenerationConfig cfg) {
        long t0 = System.nanoTime(), n = 0;
        for (int i = 0; i < 20; i++) for (int[] p : prompts) n += d.generate(List.of(p), cfg, null).get(0).tokens().length - p.length;
        return (System.nanoTime() - t0) / 1e3 / n;
    }
}
