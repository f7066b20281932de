package dev.eetune.cli;

import dev.eetune.model.LlamaConfig;
import dev.eetune.model.LlamaModel;
import dev.eetune.tensor.Tensor;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;

import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.concurrent.Callable;

/** {@code ee inspect}: config, parameter count, dtype and memory footprint of a checkpoint. */
@Command(name = "inspect", mixinStandardHelpOptions = true, description = "Describe a model checkpoint.")
final class InspectCommand implements Callable<Integer> {
    @Mixin
    ModelOptions opts;

    @Override
    public Integer call() {
        try (LlamaModel model = opts.loadModel(false)) {
            LlamaConfig c = model.config();
            List<Tensor> all = new ArrayList<>();
            all.add(model.weights().tokenEmbedding());
            model.weights().layers().forEach(l -> {
                for (Tensor t : new Tensor[] {l.attnNorm(), l.wq(), l.wk(), l.wv(), l.wo(), l.bq(), l.bk(), l.bv(), l.ffnNorm(), l.wGate(), l.wDown(), l.wUp()}) if (t != null) all.add(t);
            });
            all.add(model.weights().finalNorm());
            if (model.weights().lmHead() != model.weights().tokenEmbedding()) all.add(model.weights().lmHead());
            long params = all.stream().mapToLong(Tensor::size).sum(), bytes = all.stream().mapToLong(Tensor::byteSize).sum();
            System.out.println("model        " + opts.model);
            System.out.println("architecture " + c.architecture());
            System.out.printf(Locale.ROOT, "dim %d, hidden %d, layers %d, heads %d (kv %d, head dim %d), vocab %d, context %d%n",
                c.dim(), c.hiddenDim(), c.nLayers(), c.nHeads(), c.nKvHeads(), c.headDim(), c.vocabSize(), c.maxSeqLen());
            System.out.printf(Locale.ROOT, "rope theta %.0f%s, %s pairs, norm eps %.1e, embeddings %s%s%n", c.ropeTheta(),
                c.ropeScaling() == null ? "" : " scaled " + c.ropeScaling(), c.ropeInterleaved() ? "interleaved" : "rotate-half", c.normEps(),
                c.tiedEmbeddings() ? "tied" : "untied", c.qkvBias() ? ", q/k/v bias" : "");
            System.out.printf(Locale.ROOT, "parameters   %,d (%.2f M)%n", params, params / 1e6);
            System.out.println("dtype        matrices " + model.weights().layers().get(0).wq().dtype() + ", embeddings " + model.weights().tokenEmbedding().dtype());
            System.out.printf(Locale.ROOT, "weights      %.2f MiB (mapped from disk)%n", bytes / 1048576.0);
            System.out.printf(Locale.ROOT, "KV cache     %.2f MiB per sequence at full context (f32)%n",
                2.0 * c.nLayers() * c.maxSeqLen() * c.nKvHeads() * c.headDim() * 4 / 1048576.0);
        }
        return 0;
    }
}
