// Early exits end to end in JShell, on nothing but the JDK: pretrain a tiny byte-level Llama on a few of the JDK's
// own Java sources (seconds), attach an exit head, EE-tune it, evaluate, and generate showing where tokens exited.
// Run: ./ee shell examples/early-exit.jsh   (CI runs it and checks the lines marked "expect" below)
import dev.eetune.backend.*;
import dev.eetune.data.batch.*;
import dev.eetune.data.corpus.Corpus;
import dev.eetune.data.tokens.TokenFile;
import dev.eetune.eval.*;
import dev.eetune.exit.*;
import dev.eetune.infer.*;
import dev.eetune.model.*;
import dev.eetune.tokenizer.*;
import dev.eetune.train.*;
import java.nio.file.*;

var backend = Backends.cpu();
var tok = new ByteTokenizer();
var sources = Path.of(System.getProperty("java.home"), "lib", "src.zip"); // `ee demo --corpus` says what to do without one
var tokens = TokenFile.openOrBuild(Corpus.open(sources, "java.base/java/util/Abstract*.java"), tok, Files.createTempDirectory("ee-jsh").resolve("util.tokens"));
var data = new BatchLoader(PackedSequences.of(tokens, 128, true), 8, 1);

// a 4-layer Llama with a norm exit after layer 2 trained jointly (EE-LLM style), 50 steps
var pretrainer = new Pretrainer(LlamaConfig.llama(64, 4, 4, tok.vocabSize(), 256), backend, 1, 0.02f, new int[] {2}, 0.25);
var optimizer = new AdamW(pretrainer.parameters(), 0.9f, 0.95f, 1e-8f, 0.1f);
StepReport last = null;
for (int step = 0; step < 50; step++) last = pretrainer.trainStep(data, optimizer, step, 3e-3f, 1f, 1);
System.out.println("pretrained: " + last);                                   // expect: pretrained: step 50
var model = pretrainer.model();

// EE-Tuning: a norm head after layer 2, backbone frozen
var ee = EarlyExitModel.attach(model, List.of(new ExitSpec(2, ExitArchitecture.NORM, ExitInit.COPY)), 42);
try (var opt = AdamW.withDefaults(ee.parameters(), 0f);
     var tuner = new Tuner(ee, TunerConfig.defaults(20, 8, 128, 1e-3f), data, opt, List.of())) {
    tuner.run();
}
System.out.println(ExitEvaluator.evaluate(ee, data.evaluationBatches(4)).toTable()); // expect: ^exit\s+arch\s+val loss

// generate with early exits at threshold 0.6; show the layer each character's token came from
try (var gen = new EarlyExitGenerator(model, ee, EarlyExitPolicy.global(0.6f, 2), 1, 200)) {
    var prompt = tok.encode("    public boolean isEmpty() {");
    var out = gen.generate(List.of(prompt), GenerationConfig.greedy(60, Set.of()), null).get(0);
    var layers = gen.lastExitLayers()[0];
    var text = new StringBuilder();
    var digits = new StringBuilder();
    int previous = prompt[prompt.length - 1];
    for (int i = 0; i < layers.length; i++) { // byte-level: one character per token (newlines shown as |)
        int token = out.generated()[i];
        text.append(tok.decodeToken(previous, token).replace('\n', '|'));
        digits.append(layers[i]);
        previous = token;
    }
    System.out.println("generated: " + text + "\nexited at: " + digits); // expect: ^exited at: [24]{60}$
    System.out.println(gen.lastStats());                                   // expect: mean exit layer
}
ee.close();
optimizer.close();
pretrainer.close();
/exit
