package dev.eetune.data.batch;

import dev.eetune.data.corpus.CorpusTest;
import dev.eetune.data.tokens.TestTokenizers;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

class BatchLoaderTest {
    private static final int SEQ_LEN = 8, BATCH = 7;

    @TempDir
    Path dir;
    private PackedSequences data;

    @BeforeEach
    void windows() throws IOException {
        // random letters: every window's inputs are distinct, so a batch row tells which window it is
        data = PackedSequences.of(TestTokenizers.byteTokens(dir, CorpusTest.randomText(new Random(1), 1000)), SEQ_LEN, true); // 1001 tokens: 125 windows
    }

    @Test
    void sameSeedGivesTheSameBatchesAndAnotherSeedOthers() {
        BatchLoader a = new BatchLoader(data, BATCH, 17), b = new BatchLoader(data, BATCH, 17), c = new BatchLoader(data, BATCH, 18);

        Batch first = a.next();
        assertBatchesEqual(b.next(), first);
        assertThat(c.next().inputs()).isNotEqualTo(first.inputs());
    }

    @Test
    void everyEpochVisitsEveryWindowExactlyOnceInANewOrder() {
        Map<String, Long> windowOf = new HashMap<>();
        for (long w = 0; w < data.size(); w++) windowOf.put(Arrays.toString(row(w)), w);
        assertThat(windowOf).hasSize((int) data.size());
        BatchLoader loader = new BatchLoader(data, BATCH, 3);

        List<Long> visited = new ArrayList<>();
        while (visited.size() < 3 * data.size()) {
            Batch batch = loader.next();
            for (int r = 0; r < BATCH; r++) visited.add(windowOf.get(Arrays.toString(Arrays.copyOfRange(batch.inputs(), r * SEQ_LEN, (r + 1) * SEQ_LEN))));
        }

        int n = (int) data.size();
        for (int epoch = 0; epoch < 3; epoch++) {
            assertThat(visited.subList(epoch * n, (epoch + 1) * n)).as("epoch %d", epoch).containsExactlyInAnyOrderElementsOf(windowOf.values());
        }
        assertThat(visited.subList(0, n)).isNotEqualTo(visited.subList(n, 2 * n));
        assertThat(loader.position()).isEqualTo(new DataPosition(3, visited.size() - 3L * n));
    }

    @Test
    void resumingFromASavedPositionContinuesExactly() {
        int total = 60, saved = 23; // 60 x 7 windows: across three epoch ends
        BatchLoader straight = new BatchLoader(data, BATCH, 99);
        List<Batch> expected = new ArrayList<>();
        for (int i = 0; i < total; i++) expected.add(straight.next());

        BatchLoader first = new BatchLoader(data, BATCH, 99);
        for (int i = 0; i < saved; i++) first.next();
        String checkpoint = first.position().toJson();
        BatchLoader resumed = new BatchLoader(data, BATCH, 99);
        resumed.seek(DataPosition.fromJson(checkpoint));

        for (int i = saved; i < total; i++) assertBatchesEqual(resumed.next(), expected.get(i));
        assertThat(resumed.position()).isEqualTo(straight.position());
    }

    @Test
    void positionRoundTripsThroughMapsAndJson() {
        DataPosition p = new DataPosition(3, 41);

        assertThat(p.toJson()).isEqualTo("{\"epoch\":3,\"index\":41}");
        assertThat(DataPosition.fromJson(p.toJson())).isEqualTo(p);
        assertThat(DataPosition.fromMap(p.toMap())).isEqualTo(p);
        assertThat(DataPosition.fromMap(Map.of("epoch", 3, "index", 41L))).isEqualTo(p);
        assertThatThrownBy(() -> DataPosition.fromMap(Map.of("epoch", 3))).hasMessageContaining("\"index\"");
        assertThatThrownBy(() -> DataPosition.fromMap(Map.of("epoch", 1.5, "index", 0))).hasMessageContaining("\"epoch\"");
        assertThatThrownBy(() -> DataPosition.fromJson("[1, 2]")).hasMessageContaining("[1, 2]");
    }

    @Test
    void seekRejectsPositionsBeyondAnEpoch() {
        BatchLoader loader = new BatchLoader(data, BATCH, 1);

        assertThatThrownBy(() -> loader.seek(new DataPosition(0, data.size()))).hasMessageContaining("125 windows");
    }

    @Test
    void evaluationBatchesAreSequentialWithAShortLastBatch() {
        BatchLoader loader = new BatchLoader(data, 50, 1);
        loader.next();
        DataPosition before = loader.position();

        List<Batch> all = new ArrayList<>();
        loader.evaluationBatches(Integer.MAX_VALUE).forEach(all::add);
        List<Batch> limited = new ArrayList<>();
        loader.evaluationBatches(2).forEach(limited::add);

        assertThat(all).extracting(Batch::batchSize).containsExactly(50, 50, 25);
        assertThat(limited).extracting(Batch::batchSize).containsExactly(50, 50);
        assertThat(Arrays.copyOfRange(all.get(2).inputs(), 24 * SEQ_LEN, 25 * SEQ_LEN)).containsExactly(row(124));
        assertThat(Arrays.copyOfRange(all.get(1).inputs(), 0, SEQ_LEN)).containsExactly(row(50));
        assertBatchesEqual(limited.get(1), all.get(1));
        assertThat(loader.position()).isEqualTo(before);
    }

    private int[] row(long window) {
        int[] in = new int[SEQ_LEN], out = new int[SEQ_LEN];
        data.read(window, in, 0, out, 0);
        return in;
    }

    private static void assertBatchesEqual(Batch actual, Batch expected) {
        assertThat(actual.batchSize()).isEqualTo(expected.batchSize());
        assertThat(actual.seqLen()).isEqualTo(expected.seqLen());
        assertThat(actual.inputs()).isEqualTo(expected.inputs());
        assertThat(actual.targets()).isEqualTo(expected.targets());
    }
}
