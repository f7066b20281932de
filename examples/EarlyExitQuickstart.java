import dev.eetune.backend.Backends;
import dev.eetune.data.batch.BatchLoader;
import dev.eetune.data.batch.PackedSequences;
import dev.eetune.data.corpus.Corpus;
import dev.eetune.data.tokens.TokenFile;
import dev.eetune.exit.EarlyExitModel;
import dev.eetune.exit.ExitArchitecture;
import dev.eetune.exit.ExitInit;
import dev.eetune.exit.ExitSpec;
import dev.eetune.infer.EarlyExitGenerator;
import dev.eetune.infer.EarlyExitPolicy;
import dev.eetune.infer.GenerationConfig;
import dev.eetune.model.LlamaConfig;
import dev.eetune.tokenizer.ByteTokenizer;
import dev.eetune.train.AdamW;
import dev.eetune.train.Pretrainer;
import dev.eetune.train.Tuner;
import dev.eetune.train.TunerConfig;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Set;

/**
 * The Java quick start: a tiny byte-level Llama pretrained for seconds on the JDK's own sources, an exit head tuned on
 * it, and generation with early exits. Run: java -cp ee-cli/target/ee.jar examples/EarlyExitQuickstart.java
 * (JDK 22+: add --enable-native-access=ALL-UNNAMED). CI compiles and runs it (ee-cli ExamplesTest).
 */
public class EarlyExitQuickstart {
    public static void main(String[] args) throws Exception {
        var tok = new ByteTokenizer();
        var sources = Corpus.open(Path.of(System.getProperty("java.home"), "lib", "src.zip"), "java.base/java/util/Abstract*.java");
        var data = new BatchLoader(PackedSequences.of(TokenFile.openOrBuild(sources, tok, Files.createTempDirectory("ee").resolve("t.tokens")), 128, true), 8, 1);
        try (var pre = new Pretrainer(LlamaConfig.llama(64, 4, 4, tok.vocabSize(), 256), Backends.cpu(), 1, 0.02f, new int[] {2}, 0.25);
             var opt = new AdamW(pre.parameters(), 0.9f, 0.95f, 1e-8f, 0.1f)) {
            for (int step = 0; step < 40; step++) pre.trainStep(data, opt, step, 3e-3f, 1f, 1);
            // EE-Tuning: attach a head after layer 2 and train it with the backbone frozen
            try (var ee = EarlyExitModel.attach(pre.model(), List.of(new ExitSpec(2, ExitArchitecture.NORM, ExitInit.COPY)), 42);
                 var headOpt = AdamW.withDefaults(ee.parameters(), 0f);
                 var tuner = new Tuner(ee, TunerConfig.defaults(20, 8, 128, 1e-3f), data, headOpt, List.of())) {
                tuner.run();
                try (var gen = new EarlyExitGenerator(pre.model(), ee, EarlyExitPolicy.global(0.6f, 2), 1, 128)) {
                    var out = gen.generate(List.of(tok.encode("public int size() {")), GenerationConfig.greedy(40, Set.of()), null).get(0);
                    System.out.println(tok.decode(out.tokens()));                                  // expect: ^public int size\(\) \{
                    System.out.println("exit layers: " + java.util.Arrays.toString(gen.lastExitLayers()[0])); // expect: ^exit layers: \[[24]
                    System.out.println(gen.lastStats());                                             // expect: mean exit layer
                }
            }
        }
    }
}
