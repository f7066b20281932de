package dev.eetune.model;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.eetune.backend.Backends;
import dev.eetune.infer.GenerationConfig;
import dev.eetune.infer.GenerationResult;
import dev.eetune.infer.Generator;
import dev.eetune.tensor.DType;
import dev.eetune.tensor.Scope;
import dev.eetune.tensor.Tensor;
import dev.eetune.testing.TestData;
import dev.eetune.tokenizer.Tokenizer;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

import java.io.IOException;
import java.util.ArrayList;
import java.util.List;
import java.util.Set;

import static org.assertj.core.api.Assertions.assertThat;

/** The real pretrained stories260K must behave exactly like its reference implementation. */
class Stories260KTest {
    static final String REFERENCE = "Once upon a time, there was a little girl named Lily. She loved to play outside in the park. One day, she saw a big, red ball. She wanted to play with it, but it was too high";

    static LlamaModel model;
    static Tokenizer tok;

    @BeforeAll
    static void load() {
        model = LlamaModel.load(TestData.stories260K(), Backends.cpu());
        tok = Tokenizer.load(TestData.stories260KTokenizer());
    }

    @AfterAll
    static void close() { if (model != null) model.close(); }

    @Test
    void greedyFromBosGivesTheReferenceText() {
        try (Generator gen = new Generator(model, 1, 256)) {
            GenerationResult r = gen.generate(List.of(new int[] {tok.bos()}), GenerationConfig.greedy(200, Set.of(tok.eos())), null).get(0);
            assertThat(tok.decode(r.tokens())).startsWith(REFERENCE);
        }
    }

    @Test
    void promptEncodingAndLogitsMatchTheReferenceForward() throws IOException {
        JsonNode ref = new ObjectMapper().readTree(TestData.require("stories260K/reference-forward.json").toFile());
        int[] ids = tok.encode("Once upon a time");
        assertThat(ids).containsExactly(1, 403, 407, 261, 378);
        int n = ids.length, v = model.config().vocabSize();
        try (Scope s = Scope.of(model.backend()); Workspace ws = model.newWorkspace(); KvCache cache = new KvCache(model.config(), model.backend(), 1, 16)) {
            int[] seq = new int[n], pos = new int[n];
            for (int i = 0; i < n; i++) pos[i] = i;
            Workspace.Rows rows = ws.rows(ids, seq, pos);
            Tensor x = ws.x(n);
            model.embed(x, rows);
            List<Integer> lens = new ArrayList<>();
            Tensor normed = s.allocate(DType.F32, n, model.config().dim()), logits = s.allocate(DType.F32, n, v), idx = s.allocate(DType.I32, n);
            for (int l = 0; l < model.config().nLayers(); l++) { // the logit lens of every layer at the last position
                model.layer(l, x, rows, cache, ws, null);
                model.logits(logits, x, normed);
                model.backend().ops().argmax(idx, null, logits, 1f);
                lens.add(idx.toIntArray()[n - 1]);
            }
            model.logits(logits, x, normed);
            float[] all = logits.toFloatArray();
            JsonNode expected = ref.get("logits_last_position");
            double maxErr = 0, scale = 0;
            for (int j = 0; j < v; j++) {
                maxErr = Math.max(maxErr, Math.abs(all[(n - 1) * v + j] - expected.get(j).asDouble()));
                scale = Math.max(scale, Math.abs(expected.get(j).asDouble()));
            }
            assertThat(maxErr / scale).as("last-position logits vs the PyTorch reference").isLessThan(1e-4);
            model.backend().ops().argmax(idx, null, logits, 1f);
            int[] am = idx.toIntArray();
            for (int i = 0; i < n; i++) assertThat(am[i]).isEqualTo(ref.get("argmax_per_position").get(i).asInt());
            for (int l = 0; l < lens.size(); l++) assertThat(lens.get(l)).isEqualTo(ref.get("logit_lens_argmax_last_position_per_layer").get(l).asInt());
        }
    }
}
