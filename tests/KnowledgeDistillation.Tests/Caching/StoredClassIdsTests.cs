using KnowledgeDistillation.Caching;
using static TorchSharp.torch;

namespace KnowledgeDistillation.Tests.Caching;

public sealed class StoredClassIdsTests
{
    [Fact]
    public void Ids_up_to_65535_take_two_little_endian_bytes_as_uint16_and_larger_vocabularies_take_four()
    {
        StoredClassIds.BytesFor(65_536).Should().Be(2);
        StoredClassIds.BytesFor(65_537).Should().Be(4);

        Tensor ids = tensor(new long[] { 0, 1, 32767, 32768, 65535, 258 }).reshape(2, 3);
        byte[] two = StoredClassIds.Encode(ids, 2);
        // Hand-written: each id as an unsigned 16-bit little-endian number.
        two.Should().Equal(0x00, 0x00, 0x01, 0x00, 0xFF, 0x7F, 0x00, 0x80, 0xFF, 0xFF, 0x02, 0x01);
        StoredClassIds.Decode(two, [2, 3], 2).data<long>().ToArray().Should().Equal(0, 1, 32767, 32768, 65535, 258);

        Tensor large = tensor(new long[] { 70_000, 151_935 });
        byte[] four = StoredClassIds.Encode(large, 4);
        four.Should().Equal(0x70, 0x11, 0x01, 0x00, 0x7F, 0x51, 0x02, 0x00);
        StoredClassIds.Decode(four, [2], 4).data<long>().ToArray().Should().Equal(70_000, 151_935);
    }
}
