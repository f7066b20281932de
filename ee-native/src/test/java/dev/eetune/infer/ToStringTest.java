package dev.eetune.infer;

import dev.eetune.backend.Backends;
import dev.eetune.exit.EarlyExitModel;
import dev.eetune.exit.ExitArchitecture;
import dev.eetune.exit.ExitInit;
import dev.eetune.exit.ExitSpec;
import dev.eetune.model.LlamaModel;
import dev.eetune.model.RandomModels;
import dev.eetune.train.AdamW;
import org.junit.jupiter.api.Test;

import java.util.List;
import java.util.Set;

import static org.assertj.core.api.Assertions.assertThat;

/** What the objects users hold (in JShell) print: what they are and their state, not a class name and a hash. */
class ToStringTest {
    @Test
    void decodersAndTheOptimizerDescribeThemselves() {
        try (LlamaModel m = RandomModels.headBackbone(Backends.cpu());
             EarlyExitModel ee = EarlyExitModel.attach(m, List.of(new ExitSpec(2, ExitArchitecture.NORM, ExitInit.COPY)), 1);
             Generator g = new Generator(m, 2, 32);
             EarlyExitGenerator eg = new EarlyExitGenerator(m, ee, EarlyExitPolicy.global(0.8f, 2), 1, 32);
             SelfSpeculativeDecoder sd = new SelfSpeculativeDecoder(ee, 2, 3, false, 0f, 1, 32);
             AdamW opt = AdamW.withDefaults(ee.parameters(), 0f)) {
            assertThat(g.toString()).startsWith("Generator[" + m).contains("2 sequences of up to 32 tokens, last run: none").doesNotContain("@");
            g.generate(List.of(new int[] {1, 2}), GenerationConfig.greedy(3, Set.of()), null);
            assertThat(g.toString()).contains("last run: 1 sequences, 2 prompt tokens, 3 generated");
            assertThat(eg.toString()).startsWith("EarlyExitGenerator[" + m).contains("exits [2], thresholds {2=0.8}").doesNotContain("@");
            assertThat(sd.toString()).startsWith("SelfSpeculativeDecoder[" + m).contains("drafting with exit 2, k 3").doesNotContain("@");
            assertThat(opt.toString()).startsWith("AdamW[").contains("step 0, beta1 0.9, beta2 0.95").doesNotContain("@");
        }
    }
}
