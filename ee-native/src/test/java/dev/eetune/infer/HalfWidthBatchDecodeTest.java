package dev.eetune.infer;

import dev.eetune.backend.Backend;
import dev.eetune.backend.Backends;
import dev.eetune.exit.EarlyExitModel;
import dev.eetune.exit.ExitArchitecture;
import dev.eetune.exit.ExitInit;
import dev.eetune.exit.ExitSpec;
import dev.eetune.model.LlamaConfig;
import dev.eetune.model.LlamaModel;
import dev.eetune.model.RandomModels;
import dev.eetune.tensor.DType;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Random;

import static dev.eetune.infer.EarlyExitGeneratorTest.greedy;
import static org.assertj.core.api.Assertions.assertThat;

/**
 * Batches of a bf16 or f16 checkpoint large enough to screen its classifier (8 MiB of 16-bit classifier): every batch
 * size screens it, batches of 8 read packed panels on AVX-512 and 3-7 rows the plain matrices, and early-exit decoding
 * over them stays exact: τ = 1 with the heads evaluated gives the full model's tokens, and with exits firing the K/V
 * of every complete position equal a fresh prefill's.
 */
class HalfWidthBatchDecodeTest {
    static final Backend CPU = Backends.cpu();
    static final LlamaConfig CONFIG = RandomModels.config(128, 3, 4, 2, 256, 32768, false, false, null);

    static List<int[]> tokens(Decoder d, List<int[]> prompts, int n) {
        return d.generate(prompts, greedy(n), null).stream().map(GenerationResult::tokens).toList();
    }

    @ParameterizedTest
    @EnumSource(value = DType.class, names = {"BF16", "F16"})
    void batchesScreenTheClassifierAndEarlyExitStaysExact(DType dtype) {
        Random r = new Random(3);
        List<int[]> prompts = new ArrayList<>();
        for (int s = 0; s < 8; s++) prompts.add(r.ints(2 + s % 4, 1, CONFIG.vocabSize()).toArray());
        try (LlamaModel model = RandomModels.halfWidth(CONFIG, dtype, CPU, 17);
             EarlyExitModel heads = EarlyExitModel.attach(model, List.of(new ExitSpec(1, ExitArchitecture.NORM, ExitInit.COPY), new ExitSpec(2, ExitArchitecture.MLP, ExitInit.COPY)), 0)) {
            for (int batch : new int[] {8, 4}) {
                List<int[]> ps = prompts.subList(0, batch);
                long screened = RandomModels.screenedRows(model);
                List<int[]> full;
                try (Generator g = new Generator(model, batch, 128)) {
                    full = tokens(g, ps, 24);
                }
                assertThat(RandomModels.screenedRows(model) - screened).as("batch %d: rows the screen decided", batch).isGreaterThanOrEqualTo(batch * 20L);
                try (EarlyExitGenerator g = new EarlyExitGenerator(model, heads, EarlyExitPolicy.global(1f, 1, 2).evaluatingDisabledHeads(), batch, 128)) {
                    List<int[]> ee = tokens(g, ps, 24);
                    for (int s = 0; s < batch; s++) assertThat(ee.get(s)).as("batch %d, sequence %d at tau 1", batch, s).containsExactly(full.get(s));
                    assertThat(g.lastStats().headEvaluations()).isPositive();
                }
                for (float tau : new float[] {0.3f, 0.1f}) {
                    try (EarlyExitGenerator g = new EarlyExitGenerator(model, heads, EarlyExitPolicy.global(tau, 1, 2), batch, 128)) {
                        List<GenerationResult> res = g.generate(ps, greedy(24), null);
                        EarlyExitGenerator.Stats st = g.lastStats();
                        System.out.println(dtype + " batch " + batch + " tau " + tau + ": exits " + Arrays.toString(st.exitCounts()));
                        assertThat(st.generatedTokens() - st.exitCounts()[CONFIG.nLayers()]).as("exits fired at tau %s", tau).isPositive();
                        int[] complete = g.completeLengths();
                        int compared = 0;
                        for (int s = 0; s < batch; s++) {
                            if (complete[s] == 0) continue;
                            compared += complete[s];
                            EarlyExitGeneratorTest.assertCacheMatchesFreshPrefill(model, g.cache(), s, Arrays.copyOf(res.get(s).tokens(), complete[s]),
                                dtype + " tau " + tau + " batch " + batch + " seq " + s);
                        }
                        assertThat(compared).as("complete positions compared, batch %d, tau %s", batch, tau).isGreaterThan(batch * 4);
                    }
                }
            }
        }
    }
}
