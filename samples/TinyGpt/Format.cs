using System.Globalization;

namespace TinyGpt;

/// <summary>How the sample prints numbers in its tables.</summary>
internal static class Format
{
    public static string F(double v) => v.ToString("0.000", CultureInfo.InvariantCulture);

    public static string F0(double v) => v.ToString("0", CultureInfo.InvariantCulture);

    public static string Count(long n) => n.ToString("N0", CultureInfo.InvariantCulture);

    /// <summary>One value, or mean ± sample standard deviation over several seeds.</summary>
    public static string Spread(IEnumerable<double> values)
    {
        double[] v = values.ToArray();
        if (v.Length == 1) return F(v[0]);
        double mean = v.Average(), sd = Math.Sqrt(v.Sum(x => (x - mean) * (x - mean)) / (v.Length - 1));
        return $"{F(mean)} ± {F(sd)}";
    }
}
