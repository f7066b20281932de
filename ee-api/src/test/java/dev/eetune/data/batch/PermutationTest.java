package dev.eetune.data.batch;

import org.junit.jupiter.api.Test;

import java.util.stream.LongStream;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

class PermutationTest {
    @Test
    void everyIndexAppearsExactlyOnce() {
        for (long n : new long[] {1, 2, 3, 5, 16, 17, 1000, 4097, 65_537}) {
            Permutation p = new Permutation(n, 42);
            boolean[] seen = new boolean[(int) n];
            for (long i = 0; i < n; i++) {
                long image = p.apply(i);
                assertThat(image).isBetween(0L, n - 1);
                assertThat(seen[(int) image]).as("%d appears twice for n = %d", image, n).isFalse();
                seen[(int) image] = true;
            }
        }
    }

    @Test
    void keysGiveDifferentShuffledOrders() {
        long[] a = order(new Permutation(1000, 1)), b = order(new Permutation(1000, 2));

        assertThat(a).isNotEqualTo(b);
        assertThat(a).isNotEqualTo(LongStream.range(0, 1000).toArray());
        assertThat(order(new Permutation(1000, 1))).isEqualTo(a);
        long fixedPoints = LongStream.range(0, 1000).filter(i -> a[(int) i] == i).count();
        assertThat(fixedPoints).isLessThan(10); // a random permutation has about 1
    }

    @Test
    void largeDomainsNeedNoMemory() {
        Permutation p = new Permutation(Permutation.MAX_SIZE, 9);

        assertThat(p.apply(Permutation.MAX_SIZE - 1)).isBetween(0L, Permutation.MAX_SIZE - 1);
        assertThatThrownBy(() -> new Permutation(0, 1)).isInstanceOf(IllegalArgumentException.class);
        assertThatThrownBy(() -> p.apply(-1)).isInstanceOf(IndexOutOfBoundsException.class);
    }

    private static long[] order(Permutation p) {
        return LongStream.range(0, 1000).map(p::apply).toArray();
    }
}
