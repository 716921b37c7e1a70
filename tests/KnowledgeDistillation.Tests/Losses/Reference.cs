namespace KnowledgeDistillation.Tests.Losses;

/// <summary>
/// Double-precision references for every loss, written as plain loops straight from the formulas in
/// docs/losses.md and sharing no code with the library. Inputs are row-major arrays: <c>rows × classes</c> for
/// logits, <c>rows × width</c> for hidden states, <c>B × H × S × S</c> for attention maps. <c>keep</c> (null = all)
/// says which rows count; every loss is the mean over kept rows, 0 when none is kept.
/// </summary>
internal static class Reference
{
    public static double[] LogSoftmax(ReadOnlySpan<double> z, double temperature)
    {
        double max = double.NegativeInfinity;
        foreach (double v in z) max = Math.Max(max, v / temperature);
        double sum = 0;
        foreach (double v in z) sum += Math.Exp(v / temperature - max);
        double logSum = max + Math.Log(sum);
        var result = new double[z.Length];
        for (int c = 0; c < z.Length; c++) result[c] = z[c] / temperature - logSum; // -inf stays -inf
        return result;
    }

    /// <summary>KL(p ‖ q) = Σ p (log p − log q), with 0 · log 0 = 0.</summary>
    public static double Kl(double[] logP, double[] logQ)
    {
        double total = 0;
        for (int c = 0; c < logP.Length; c++)
        {
            double p = Math.Exp(logP[c]);
            if (p > 0) total += p * (logP[c] - logQ[c]);
        }
        return total;
    }

    /// <summary>Generalised JSD from probabilities: m = β p_t + (1 − β) p_s computed directly (no logsumexp).</summary>
    public static double Jsd(double[] logPs, double[] logPt, double beta, bool normalize)
    {
        if (beta == 0) return Kl(logPt, logPs);
        if (beta == 1) return Kl(logPs, logPt);
        double toTeacher = 0, toStudent = 0;
        for (int c = 0; c < logPs.Length; c++)
        {
            double ps = Math.Exp(logPs[c]), pt = Math.Exp(logPt[c]);
            double m = beta * pt + (1 - beta) * ps;
            if (pt > 0) toTeacher += pt * Math.Log(pt / m);
            if (ps > 0) toStudent += ps * Math.Log(ps / m);
        }
        double d = beta * toTeacher + (1 - beta) * toStudent;
        return normalize ? d / (beta * (1 - beta)) : d;
    }

    /// <summary>Total variation distance ½ Σ |p_t − p_s|.</summary>
    public static double Tvd(double[] logPs, double[] logPt)
    {
        double total = 0;
        for (int c = 0; c < logPs.Length; c++) total += Math.Abs(Math.Exp(logPt[c]) - Math.Exp(logPs[c]));
        return total / 2;
    }

    /// <summary>DistiLLM's skew KL, KL(p ‖ αp + (1 − α)q) with p the teacher (forward) or the student (reverse), from probabilities directly.</summary>
    public static double SkewKlRow(double[] logPs, double[] logPt, double alpha, bool reverse)
    {
        double total = 0;
        for (int c = 0; c < logPs.Length; c++)
        {
            double p = Math.Exp(reverse ? logPs[c] : logPt[c]), q = Math.Exp(reverse ? logPt[c] : logPs[c]);
            if (p > 0) total += p * Math.Log(p / (alpha * p + (1 - alpha) * q));
        }
        return total;
    }

    public static double TotalVariation(double[] s, double[] t, int classes, double temperature, bool scale = true, bool[]? keep = null) =>
        Divergence(s, t, classes, temperature, scale, keep, Tvd);

    public static double SkewKl(double[] s, double[] t, int classes, double alpha, bool reverse, double temperature, bool scale = true, bool[]? keep = null) =>
        Divergence(s, t, classes, temperature, scale, keep, (ls, lt) => SkewKlRow(ls, lt, alpha, reverse));

    public static double Divergence(
        double[] student, double[] teacher, int classes, double temperature, bool scale, bool[]? keep,
        Func<double[], double[], double> perRow)
    {
        int rows = student.Length / classes;
        double total = 0;
        int kept = 0;
        for (int r = 0; r < rows; r++)
        {
            if (keep is not null && !keep[r]) continue;
            double[] ls = LogSoftmax(student.AsSpan(r * classes, classes), temperature);
            double[] lt = LogSoftmax(teacher.AsSpan(r * classes, classes), temperature);
            total += perRow(ls, lt);
            kept++;
        }
        double mean = kept == 0 ? 0 : total / kept;
        return scale ? mean * temperature * temperature : mean;
    }

    public static double SoftTargetKl(double[] s, double[] t, int classes, double temperature, bool scale = true, bool[]? keep = null) =>
        Divergence(s, t, classes, temperature, scale, keep, (ls, lt) => Kl(lt, ls));

    public static double ReverseKl(double[] s, double[] t, int classes, double temperature, bool scale = true, bool[]? keep = null) =>
        Divergence(s, t, classes, temperature, scale, keep, (ls, lt) => Kl(ls, lt));

    public static double GeneralizedJsd(double[] s, double[] t, int classes, double beta, double temperature, bool normalize = false, bool scale = true, bool[]? keep = null) =>
        Divergence(s, t, classes, temperature, scale, keep, (ls, lt) => Jsd(ls, lt, beta, normalize));

    /// <summary>Cross-entropy with label smoothing ε spread over the classes whose logit is finite.</summary>
    public static double CrossEntropy(double[] logits, long[] labels, int classes, long ignoreIndex = -100, double smoothing = 0, bool[]? keep = null)
    {
        double total = 0;
        int kept = 0;
        for (int r = 0; r < labels.Length; r++)
        {
            if (labels[r] == ignoreIndex || (keep is not null && !keep[r])) continue;
            double[] logP = LogSoftmax(logits.AsSpan(r * classes, classes), 1);
            double available = 0, sum = 0;
            foreach (double lp in logP)
            {
                if (double.IsFinite(lp))
                {
                    available++;
                    sum += lp;
                }
            }
            total += -(1 - smoothing) * logP[labels[r]] - smoothing * sum / available;
            kept++;
        }
        return kept == 0 ? 0 : total / kept;
    }

    /// <summary>h·Wᵀ + b for each row (W is out × in, row-major), or h itself without a projection.</summary>
    public static double[] Project(double[] hidden, int width, double[]? weight, double[]? bias)
    {
        if (weight is null) return hidden;
        int outWidth = bias!.Length, rows = hidden.Length / width;
        var result = new double[rows * outWidth];
        for (int r = 0; r < rows; r++)
        {
            for (int o = 0; o < outWidth; o++)
            {
                double v = bias[o];
                for (int i = 0; i < width; i++) v += weight[o * width + i] * hidden[r * width + i];
                result[r * outWidth + o] = v;
            }
        }
        return result;
    }

    public static double Cosine(double[] s, double[] t, int width, bool[]? keep = null)
    {
        int rows = t.Length / width;
        double total = 0;
        int kept = 0;
        for (int r = 0; r < rows; r++)
        {
            if (keep is not null && !keep[r]) continue;
            double dot = 0, ns = 0, nt = 0;
            for (int i = 0; i < width; i++)
            {
                double a = s[r * width + i], b = t[r * width + i];
                dot += a * b;
                ns += a * a;
                nt += b * b;
            }
            total += 1 - dot / (Math.Max(Math.Sqrt(ns), 1e-8) * Math.Max(Math.Sqrt(nt), 1e-8));
            kept++;
        }
        return kept == 0 ? 0 : total / kept;
    }

    public static double Mse(double[] s, double[] t, int width, bool[]? keep = null)
    {
        int rows = t.Length / width;
        double total = 0;
        int count = 0;
        for (int r = 0; r < rows; r++)
        {
            if (keep is not null && !keep[r]) continue;
            for (int i = 0; i < width; i++)
            {
                double d = s[r * width + i] - t[r * width + i];
                total += d * d;
                count++;
            }
        }
        return count == 0 ? 0 : total / count;
    }

    /// <summary>
    /// Attention MSE over cells whose query and key are real tokens (and, for scores, above the threshold in both
    /// maps); teacher heads are averaged in consecutive groups of Ht / Hs.
    /// </summary>
    public static double AttentionMse(double[] s, double[] t, int batch, int studentHeads, int teacherHeads, int seq, bool[]? tokens, double? scoreThreshold)
    {
        int group = teacherHeads / studentHeads;
        double total = 0;
        long count = 0;
        for (int b = 0; b < batch; b++)
        for (int h = 0; h < studentHeads; h++)
        for (int i = 0; i < seq; i++)
        for (int j = 0; j < seq; j++)
        {
            if (tokens is not null && !(tokens[b * seq + i] && tokens[b * seq + j])) continue;
            double teacherValue = 0;
            for (int g = 0; g < group; g++) teacherValue += t[(((b * teacherHeads) + h * group + g) * seq + i) * seq + j];
            teacherValue /= group;
            double studentValue = s[(((b * studentHeads) + h) * seq + i) * seq + j];
            if (scoreThreshold is double threshold && (studentValue <= threshold || teacherValue <= threshold)) continue;
            total += (studentValue - teacherValue) * (studentValue - teacherValue);
            count++;
        }
        return count == 0 ? 0 : total / count;
    }
}
